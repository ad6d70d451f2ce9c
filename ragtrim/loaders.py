"""Reading documents for ingestion: ragtrim JSONL files and folders of Markdown/text files.

A bad file never sinks the batch: non-UTF-8, binary or malformed inputs are reported with
their path (and line), and everything else is still ingested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ragtrim.errors import InputError
from ragtrim.types import Document

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}

#: YAML front matter: a ``---`` line at the very start, the YAML, a closing ``---``/``...`` line
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S | re.M)


@dataclass
class LoadReport:
    documents: list[Document] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: where each document came from (``path`` or ``path:line``), parallel to ``documents``
    sources: list[str] = field(default_factory=list)

    def add(self, document: Document, source: str) -> None:
        self.documents.append(document)
        self.sources.append(source)


def split_front_matter(text: str, path: Path | str = "<text>") -> tuple[dict[str, Any], str]:
    """Split YAML front matter from the body; malformed YAML is an error naming the file.

    A leading block that parses to something other than a mapping is not front matter (a
    Markdown thematic break, say): the text is returned whole.
    """
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        raise InputError(f"{path}: malformed YAML front matter{where}, skipped") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        return {}, text
    return {str(k): v for k, v in meta.items()}, text[match.end() :]


def _title(meta: dict[str, Any], body: str, path: Path) -> str:
    if meta.get("title"):
        return str(meta["title"])
    for line in body.splitlines()[:20]:
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("_", " ").replace("-", " ")


def read_text_file(path: Path, root: Path) -> Document:
    """A Markdown/text file as a Document: id from the path (or front matter ``id``), metadata
    from front matter plus ``title``, ``path`` and ``folder``."""
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise InputError(f"{path}: binary file (contains NUL bytes), skipped")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 (byte {exc.start}), skipped") from None
    meta, body = split_front_matter(text, path)
    relative = path.relative_to(root) if root != path else Path(path.name)
    meta.setdefault("title", _title(meta, body, path))
    meta["path"] = relative.as_posix()
    if len(relative.parts) > 1:
        meta.setdefault("folder", relative.parent.as_posix())
    doc_id = meta.pop("id", relative.with_suffix("").as_posix())
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    try:
        return Document.coerce({"id": doc_id, "text": body, "metadata": meta})
    except InputError as exc:
        raise InputError(f"{path}: {exc}, skipped") from None


def iter_jsonl(path: Path, report: LoadReport) -> Iterator[tuple[Document, str]]:
    """Documents of a ragtrim JSONL file with their ``path:line``; bad lines go to ``report``."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                report.problems.append(
                    f"{path}:{number}: not valid UTF-8 (byte {exc.start}), skipped"
                )
                continue
            except ValueError as exc:
                report.problems.append(f"{path}:{number}: not valid JSON ({exc}), skipped")
                continue
            try:
                yield Document.coerce(record), f"{path}:{number}"
            except InputError as exc:
                report.problems.append(f"{path}:{number}: {exc}, skipped")


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _leaves_root(file: Path, root: Path) -> Path | None:
    """Where ``file`` really is, if a symlink (of the file or a folder on the way) takes it
    outside ``root``; else ``None``."""
    real = file.resolve()
    base = root.resolve()
    return None if real == base or base in real.parents else real


def load_documents(paths: Iterable[str | Path], follow_symlinks: bool = False) -> LoadReport:
    """Documents from JSONL files, text/Markdown files and folders (recursively).

    Unreadable, binary, non-UTF-8 and malformed inputs are reported in ``problems`` by path
    (and line) and skipped; everything else is loaded. Hidden files and folders are ignored.
    A document id that occurs twice is an error naming both sources.

    A symlink whose target lies outside the folder being ingested (for a file named directly:
    outside the file's folder) is reported and skipped unless ``follow_symlinks``: a folder of
    documents from elsewhere must not pull in ``/etc/passwd`` or a private key. Links that stay
    inside the folder are followed.
    """
    report = LoadReport()
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if path.is_file():
            files, root = [path], path.parent
        else:
            root = path
            found = (p for p in path.rglob("*") if p.is_file() and not _hidden(p, root))
            files = sorted(p for p in found if p.suffix.lower() in TEXT_SUFFIXES | JSONL_SUFFIXES)
        for file in files:
            target = None if follow_symlinks else _leaves_root(file, root)
            if target is not None:
                report.problems.append(
                    f"{file}: symlink to {target}, outside {root}, skipped (follow_symlinks="
                    "True / --follow-symlinks ingests it)"
                )
                continue
            if file.suffix.lower() in JSONL_SUFFIXES:
                for document, source in iter_jsonl(file, report):
                    report.add(document, source)
                continue
            try:
                report.add(read_text_file(file, root), str(file))
            except InputError as exc:
                report.problems.append(str(exc))
            except OSError as exc:
                report.problems.append(f"{file}: cannot read ({exc.strerror}), skipped")
    _check_unique(report)
    return report


def _check_unique(report: LoadReport) -> None:
    first: dict[str, str] = {}
    clashes: list[str] = []
    for document, source in zip(report.documents, report.sources, strict=True):
        if document.id in first:
            clashes.append(f"{document.id!r} ({first[document.id]} and {source})")
        else:
            first[document.id] = source
    if clashes:
        more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        raise InputError(f"duplicate document ids: {', '.join(clashes[:5])}{more}")
