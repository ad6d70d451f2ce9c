"""Reading documents for ingestion: ragtrim JSONL files and folders of Markdown/text files.

A bad file never sinks the batch: non-UTF-8, binary or malformed inputs are reported with
their path (and line), and everything else is still ingested.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ragtrim.errors import InputError
from ragtrim.types import Document

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst"}


@dataclass
class LoadReport:
    documents: list[Document] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split YAML front matter (``---`` fenced, at the very start) from the body."""
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---", 4)
    if end < 0:
        return {}, text
    try:
        meta = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError:
        return {}, text
    if not isinstance(meta, dict):
        return {}, text
    body_start = text.find("\n", end + 4)
    body = "" if body_start < 0 else text[body_start + 1 :]
    return {str(k): (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in meta.items()}, body


def _title(meta: dict[str, Any], body: str, path: Path) -> str:
    if meta.get("title"):
        return str(meta["title"])
    for line in body.splitlines()[:20]:
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("_", " ").replace("-", " ")


def read_text_file(path: Path, root: Path) -> Document:
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise InputError(f"{path}: binary file (contains NUL bytes), skipped")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 (byte {exc.start}), skipped") from None
    meta, body = _front_matter(text)
    relative = path.relative_to(root) if root != path else Path(path.name)
    meta.setdefault("title", _title(meta, body, path))
    meta["path"] = relative.as_posix()
    if len(relative.parts) > 1:
        meta.setdefault("folder", relative.parent.as_posix())
    doc_id = str(meta.pop("id", relative.with_suffix("").as_posix()))
    return Document(id=doc_id, text=body, metadata=meta)


def iter_jsonl(path: Path, report: LoadReport) -> Iterator[Document]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
                yield Document.coerce(record)
            except UnicodeDecodeError:
                report.problems.append(f"{path}:{number}: not valid UTF-8, skipped")
            except ValueError as exc:
                report.problems.append(f"{path}:{number}: {exc}")


def load_documents(paths: Iterable[str | Path]) -> LoadReport:
    """Documents from JSONL files, text/Markdown files and folders (recursively)."""
    report = LoadReport()
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if path.is_file() and path.suffix in {".jsonl", ".ndjson"}:
            report.documents.extend(iter_jsonl(path, report))
            continue
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        root = path.parent if path.is_file() else path
        for file in files:
            if file.suffix == ".jsonl":
                report.documents.extend(iter_jsonl(file, report))
            elif file.suffix.lower() in TEXT_SUFFIXES or path.is_file():
                try:
                    report.documents.append(read_text_file(file, root))
                except (InputError, ValueError, OSError) as exc:
                    report.problems.append(str(exc))
    return report
