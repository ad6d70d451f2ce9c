"""Opening diskcache stores so that a damaged one never breaks the app that uses it.

Every persistent cache in ragtrim (embeddings, retrieval, semantic) goes through this module:
a database that SQLite reports as corrupt (``SQLITE_CORRUPT``/``SQLITE_NOTADB``) is moved aside
(kept for inspection, never deleted), reported with one warning naming both paths, and
replaced by an empty cache. Lock timeouts, permission problems and full disks are *not*
corruption: they propagate, so a busy or read-only cache is never thrown away.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import diskcache

logger = logging.getLogger(__name__)

_CORRUPTION_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
T = TypeVar("T")


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """A damaged file, as opposed to a lock timeout, a permission problem or a full disk."""
    code = getattr(exc, "sqlite_errorname", None)
    if code is not None:
        return code in _CORRUPTION_CODES
    return type(exc) is sqlite3.DatabaseError


def aside_path(directory: Path) -> Path:
    """A fresh ``<name>.corrupt-<timestamp>`` sibling of ``directory``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    target = directory.with_name(f"{directory.name}.corrupt-{stamp}")
    suffix = 1
    while target.exists():
        target = directory.with_name(f"{directory.name}.corrupt-{stamp}-{suffix}")
        suffix += 1
    return target


def replace_corrupted(
    directory: Path, exc: Exception, label: str, **settings: Any
) -> diskcache.Cache:
    """Move a corrupted cache aside, warn once for this event, and open an empty one.

    Another process may have replaced the cache since ``exc`` was raised: then its healthy
    replacement is used instead of being moved aside in turn.
    """
    directory = Path(directory)
    try:
        return _open_checked(directory, settings)
    except sqlite3.DatabaseError as again:
        if not is_corruption(again):
            raise
    target = aside_path(directory)
    try:
        directory.rename(target)
        where = f"moved it to {target}"
    except FileNotFoundError:
        where = "another process already moved it aside"
    logger.warning(
        "%s cache at %s is corrupted (%s); %s and started an empty cache",
        label,
        directory,
        exc,
        where,
    )
    return diskcache.Cache(str(directory), **settings)


def _open_checked(directory: Path, settings: dict[str, Any]) -> diskcache.Cache:
    """Open and touch the store: diskcache reads its settings table on open, so a file that is
    not a database fails here rather than on the first query."""
    cache = diskcache.Cache(str(directory), **settings)
    try:
        cache.get("__ragtrim_probe__", retry=True)
    except BaseException:
        cache.close()
        raise
    return cache


def open_diskcache(
    directory: Path | str, label: str = "diskcache", **settings: Any
) -> diskcache.Cache:
    """Open the diskcache at ``directory``; a corrupted one is reported, moved aside and rebuilt."""
    directory = Path(directory)
    try:
        return _open_checked(directory, settings)
    except sqlite3.DatabaseError as exc:
        if not is_corruption(exc):
            raise
        return replace_corrupted(directory, exc, label, **settings)


class RecoveringCache:
    """A diskcache handle that also survives corruption found *after* opening.

    ``run(operation, default)`` applies ``operation`` to the current store; if SQLite reports
    corruption, the store is replaced (once, however many threads hit it) and ``default`` is
    returned, so the caller sees a miss or a dropped write, never an exception.
    """

    def __init__(self, directory: Path | str, label: str, **settings: Any) -> None:
        self.directory = Path(directory)
        self.label = label
        self._settings = settings
        self._lock = threading.Lock()
        self._store = open_diskcache(self.directory, label, **settings)

    @property
    def store(self) -> diskcache.Cache:
        return self._store

    def run(self, operation: Callable[[diskcache.Cache], T], default: T) -> T:
        store = self._store
        try:
            return operation(store)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self._recover(exc, store)
            return default

    def _recover(self, exc: sqlite3.DatabaseError, failed: diskcache.Cache) -> None:
        with self._lock:
            if self._store is not failed:
                return
            failed.close()
            self._store = replace_corrupted(self.directory, exc, self.label, **self._settings)

    def close(self) -> None:
        self._store.close()
