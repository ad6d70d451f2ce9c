"""Atomic, pickle-free index folders.

Layout: ``<dir>/manifest.json`` names a data folder ``<dir>/data-<id>/`` holding plain files
(JSON, JSONL, ``.npy``, FAISS). A save writes a *new* data folder, fsyncs it, then atomically
replaces the manifest; only then are older data folders removed. A save killed at any instant
leaves either the old manifest (pointing at the old, intact data) or the new one: the index on
disk is always loadable. Every file's SHA-256 is in the manifest and checked on load, and the
manifest carries the SHA-256 of its own canonical JSON (``manifest_sha256``), so a damaged
manifest (a flipped budget, weight or fingerprint) is detected like a damaged data file.

Format 1 manifests (ragtrim before the manifest checksum) are refused by default with a message
naming the remedy: ``read_index_dir(..., allow_unchecked_manifest=True)`` (``Pipeline.load``
and the CLI have the same switch) loads one, and saving it again writes format 2.

Concurrent saves into one folder are serialised by an advisory lock (``.lock``, POSIX
``flock``): without it, one writer's clean-up could delete the data folder that another writer
has just made the manifest point at.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragtrim.errors import IndexStoreError

FORMAT_VERSION = 2
#: the format before manifests were checksummed: readable only when asked for
UNCHECKED_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHECKSUM_FIELD = "manifest_sha256"
_DATA_DIR = re.compile(r"data-[0-9a-f]{12}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON, without its own checksum field."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def seal_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with its checksum field set (what a save writes)."""
    return {**manifest, CHECKSUM_FIELD: manifest_checksum(manifest)}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _writer_lock(target: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: saves into one folder must not overlap
        yield
        return
    with (target / ".lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_index_dir(
    target: Path, write_files: Callable[[Path], None], manifest: dict[str, Any]
) -> None:
    """Write files into a fresh data folder via ``write_files``, then switch the manifest to it."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with _writer_lock(target):
        _write_locked(target, write_files, manifest)


def _write_locked(
    target: Path, write_files: Callable[[Path], None], manifest: dict[str, Any]
) -> None:
    data_name = f"data-{uuid.uuid4().hex[:12]}"
    data_dir = target / data_name
    data_dir.mkdir()
    try:
        write_files(data_dir)
        files = {}
        for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
            files[str(path.relative_to(data_dir))] = _sha256(path)
        _fsync_dir(data_dir)
        full = seal_manifest(
            {**manifest, "format_version": FORMAT_VERSION, "data_dir": data_name, "files": files}
        )
        tmp = target / f".{MANIFEST}.{uuid.uuid4().hex[:8]}.tmp"
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(full, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target / MANIFEST)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    # the manifest now names data_dir: from here on it must never be removed
    _fsync_dir(target)
    for stale in target.iterdir():
        if stale.name != data_name and (
            stale.name.startswith("data-") or stale.name.endswith(".tmp")
        ):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def read_index_dir(
    target: Path, verify: bool = True, allow_unchecked_manifest: bool = False
) -> tuple[dict[str, Any], Path]:
    """The manifest and the data folder it names, after checking the manifest's and every
    file's checksum (``verify=False`` skips the data files' checksums only)."""
    target = Path(target)
    manifest_path = target / MANIFEST
    if not manifest_path.is_file():
        raise IndexStoreError(f"{manifest_path}: not found; is {target} a saved ragtrim index?")
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise IndexStoreError(f"{manifest_path}: unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise IndexStoreError(f"{manifest_path}: expected a JSON object")
    version = manifest.get("format_version")
    if version == UNCHECKED_FORMAT_VERSION and not allow_unchecked_manifest:
        raise IndexStoreError(
            f"{manifest_path}: index format version 1 has no manifest checksum, so damage to "
            "it cannot be detected; if you trust this folder, load it with "
            "allow_unchecked_manifest=True (CLI: --allow-unchecked-manifest) and save it again, "
            "or re-ingest"
        )
    if version not in (FORMAT_VERSION, UNCHECKED_FORMAT_VERSION):
        raise IndexStoreError(
            f"{manifest_path}: index format version {version!r}; this ragtrim reads version "
            f"{FORMAT_VERSION} (re-ingest with this version)"
        )
    if version == FORMAT_VERSION:
        recorded = manifest.get(CHECKSUM_FIELD)
        if not isinstance(recorded, str):
            raise IndexStoreError(f"{manifest_path}: {CHECKSUM_FIELD!r} is missing")
        if recorded != manifest_checksum(manifest):
            raise IndexStoreError(
                f"{manifest_path}: checksum mismatch (manifest changed or corrupted)"
            )
    data_name, files = manifest.get("data_dir"), manifest.get("files")
    if not isinstance(data_name, str) or not _DATA_DIR.fullmatch(data_name):
        raise IndexStoreError(
            f"{manifest_path}: 'data_dir' must name a data-<id> folder, got {data_name!r}"
        )
    if not isinstance(files, dict) or not files:
        raise IndexStoreError(f"{manifest_path}: 'files' must list the checksum of every data file")
    data_dir = target / data_name
    if data_dir.is_symlink() or not data_dir.is_dir():
        raise IndexStoreError(f"{data_dir}: data folder named by the manifest is missing")
    root = data_dir.resolve()
    for name, expected in files.items():
        if not isinstance(expected, str) or Path(name).is_absolute() or ".." in Path(name).parts:
            raise IndexStoreError(f"{manifest_path}: file {name!r} lies outside the data folder")
        path = data_dir / name
        if root not in path.resolve().parents:
            raise IndexStoreError(f"{manifest_path}: file {name!r} lies outside the data folder")
        if not path.is_file():
            raise IndexStoreError(f"{path}: missing file listed in the manifest")
        if verify and _sha256(path) != expected:
            raise IndexStoreError(f"{path}: checksum mismatch (file changed or corrupted)")
    return manifest, data_dir
