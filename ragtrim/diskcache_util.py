"""Opening diskcache stores so that neither a damaged nor a hostile one can hurt the app.

Every persistent cache in ragtrim (embeddings, retrieval, semantic, rerank scores) goes
through this module. Cache directories may be shared (``$RAGTRIM_CACHE_DIR``), so their
contents are untrusted input:

* values are read by :class:`SafeDisk`, which never unpickles: a row stored in pickle mode, a
  key stored pickled, or a row whose file lies outside the cache directory (``../../x``, an
  absolute path, a symlink out) reads as :data:`REFUSED`, which every caller treats as a
  damaged entry (a miss, then deleted);
* deleting an entry's file never touches anything outside the cache directory;
* the ``Settings`` table (which diskcache turns into attributes and ``PRAGMA`` statements) is
  checked against diskcache's own keys and types before diskcache reads it, and every setting
  is passed explicitly, so a planted row can neither configure the cache nor break opening it.

A database that SQLite reports as corrupt (``SQLITE_CORRUPT``/``SQLITE_NOTADB``), a
``cache.db`` that is not a file, or bad settings are moved aside (kept for inspection, never
deleted), reported with one warning naming both paths, and replaced by an empty cache. Lock
timeouts, permission problems and full disks are *not* damage: they are never moved aside;
:class:`RecoveringCache` then runs without the cache (a miss or a dropped write, one warning).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import diskcache
from diskcache.core import (
    DEFAULT_SETTINGS,
    EVICTION_POLICY,
    METADATA,
    MODE_BINARY,
    MODE_RAW,
    MODE_TEXT,
    UNKNOWN,
)

logger = logging.getLogger(__name__)

_CORRUPTION_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
T = TypeVar("T")
DBNAME = "cache.db"
_JOURNAL_MODES = frozenset({"delete", "truncate", "persist", "memory", "wal", "off"})


class _Refused:
    """What :class:`SafeDisk` returns for a row it will not decode (a damaged entry)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "REFUSED"


#: the value of a cache row that is stored pickled or points outside the cache directory
REFUSED = _Refused()


class UnsafeCacheError(OSError):
    """A cache row or setting that ragtrim refuses to decode; the message says why."""


class SafeDisk(diskcache.Disk):
    """A ``diskcache.Disk`` that stores and reads only ``str``/``bytes``/``int``/``float``.

    Nothing is ever unpickled, and no path outside the cache directory is opened or deleted,
    whatever the rows of ``cache.db`` say.
    """

    def __init__(self, directory: str, min_file_size: int = 0, pickle_protocol: int = 0) -> None:
        super().__init__(directory, min_file_size, pickle_protocol)
        self._root = os.path.realpath(directory)

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) not in (str, bytes, int, float):
            raise TypeError(f"cache keys must be str, bytes, int or float, not {type(key)}")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise UnsafeCacheError("refused a pickled cache key (ragtrim never unpickles)")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, Any, Any]:
        if read or type(value) not in (str, bytes, int, float):
            raise TypeError(
                f"cache values must be str, bytes, int or float (never pickled), not "
                f"{type(value).__name__}"
            )
        return super().store(value, read, key)

    def inside(self, filename: Any, follow_links: bool = True) -> str | None:
        """The full path of ``filename`` if it lies inside the cache directory, else ``None``.

        ``follow_links=False`` checks only the folder the file is in, so that a symlink planted
        in the cache can itself be removed (``os.remove`` never follows it).
        """
        if not isinstance(filename, str) or not filename or os.path.isabs(filename):
            return None
        full = os.path.join(self._root, filename)
        if follow_links:
            resolved = os.path.realpath(full)
        else:
            resolved = os.path.join(os.path.realpath(os.path.dirname(full)), os.path.basename(full))
        if os.path.commonpath([self._root, resolved]) != self._root or resolved == self._root:
            return None
        return resolved

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode == MODE_RAW:
            return super().fetch(mode, filename, value, read)
        if mode in (MODE_BINARY, MODE_TEXT) and not read:
            if self.inside(filename) is None:
                return REFUSED  # a file outside the cache: never opened
            return super().fetch(mode, filename, value, read)
        return REFUSED  # pickled (or unknown) rows are never decoded

    def remove(self, file_path: Any) -> None:
        """Remove an entry's file and its then-empty folders, never outside the directory."""
        full = self.inside(file_path, follow_links=False)
        if full is None:
            logger.warning(
                "cache at %s: an entry names the file %r outside the cache; not deleted",
                self._root,
                file_path,
            )
            return
        with contextlib.suppress(OSError):  # another process removed it first
            os.remove(full)
        folder = os.path.dirname(full)
        while folder != self._root and os.path.commonpath([self._root, folder]) == self._root:
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)


def _expected_settings() -> dict[str, type | tuple[type, ...]]:
    types: dict[str, type | tuple[type, ...]] = {}
    for key, value in {**DEFAULT_SETTINGS, **METADATA}.items():
        types[key] = (int, float) if isinstance(value, float) else type(value)
    return types


_SETTING_TYPES = _expected_settings()


def check_settings(directory: Path) -> None:
    """Raise :class:`UnsafeCacheError` if ``cache.db`` is not a file or holds a setting that
    diskcache would act on but ragtrim does not expect (unknown key, wrong type, unknown
    eviction policy or journal mode). Read-only: nothing is changed here."""
    database = directory / DBNAME
    if not os.path.lexists(database):
        return
    if database.is_symlink() or not database.is_file():
        raise UnsafeCacheError(f"{database} is not a regular file")
    uri = f"{database.resolve().as_uri()}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, timeout=60)
    try:
        try:
            rows = connection.execute("SELECT key, value FROM Settings").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return
            raise
    finally:
        connection.close()
    for key, value in rows:
        expected = _SETTING_TYPES.get(key) if isinstance(key, str) else None
        if expected is None:
            raise UnsafeCacheError(f"{database}: unexpected Settings row {key!r}")
        if isinstance(value, bool) or not isinstance(value, expected):
            raise UnsafeCacheError(f"{database}: Settings row {key!r} has the value {value!r}")
        if key == "eviction_policy" and value not in EVICTION_POLICY:
            raise UnsafeCacheError(f"{database}: unknown eviction policy {value!r}")
        if key == "sqlite_journal_mode" and str(value).lower() not in _JOURNAL_MODES:
            raise UnsafeCacheError(f"{database}: unknown journal mode {value!r}")


def new_cache(directory: Path | str, **settings: Any) -> diskcache.Cache:
    """A ``diskcache.Cache`` on :class:`SafeDisk` with every setting given explicitly (the
    ``Settings`` rows already in the database are checked first and never take effect)."""
    directory = Path(directory)
    check_settings(directory)
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise TypeError(f"unknown diskcache settings {sorted(unknown)}")
    return diskcache.Cache(str(directory), disk=SafeDisk, **{**DEFAULT_SETTINGS, **settings})


def is_corruption(exc: BaseException) -> bool:
    """A damaged or hostile store, as opposed to a lock timeout, a permission problem or a
    full disk."""
    if isinstance(exc, UnsafeCacheError):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
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
    except (sqlite3.DatabaseError, UnsafeCacheError) as again:
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
    return new_cache(directory, **settings)


def _open_checked(directory: Path, settings: dict[str, Any]) -> diskcache.Cache:
    """Open and touch the store: diskcache reads its settings table on open, so a file that is
    not a database fails here rather than on the first query."""
    cache = new_cache(directory, **settings)
    try:
        cache.get("__ragtrim_probe__", retry=True)
    except BaseException:
        cache.close()
        raise
    return cache


def open_diskcache(
    directory: Path | str, label: str = "diskcache", **settings: Any
) -> diskcache.Cache:
    """Open the diskcache at ``directory``; a corrupted one is reported, moved aside and rebuilt.

    Failures that are not damage (a read-only or unreadable directory, a lock held too long)
    raise ``OSError``/``sqlite3.Error``/``diskcache.Timeout``.
    """
    directory = Path(directory)
    try:
        return _open_checked(directory, settings)
    except (sqlite3.DatabaseError, UnsafeCacheError) as exc:
        if not is_corruption(exc):
            raise
        return replace_corrupted(directory, exc, label, **settings)


#: what opening or using a cache can raise that is not ragtrim's fault: the cache is skipped
CACHE_FAILURES: tuple[type[BaseException], ...] = (sqlite3.Error, OSError, diskcache.Timeout)


class RecoveringCache:
    """A diskcache handle that also survives corruption found *after* opening, and a cache
    that cannot be opened at all.

    ``run(operation, default)`` applies ``operation`` to the current store; if SQLite reports
    corruption, the store is replaced (once, however many threads hit it) and ``default`` is
    returned, so the caller sees a miss or a dropped write. A cache that cannot be opened
    (read-only, a lock held for over a minute) is *unavailable*: one warning naming the path
    and the reason, then every ``run`` returns ``default`` (it only costs speed).
    """

    def __init__(self, directory: Path | str, label: str, **settings: Any) -> None:
        self.directory = Path(directory)
        self.label = label
        self._settings = settings
        self._lock = threading.Lock()
        self._store: diskcache.Cache | None = None
        #: why the cache could not be opened, if it could not
        self.unavailable: str | None = None
        try:
            self._store = open_diskcache(self.directory, label, **settings)
        except CACHE_FAILURES as exc:
            self.unavailable = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "%s cache at %s cannot be opened (%s); running without it",
                label,
                self.directory,
                self.unavailable,
            )

    @property
    def store(self) -> diskcache.Cache | None:
        return self._store

    def run(self, operation: Callable[[diskcache.Cache], T], default: T) -> T:
        store = self._store
        if store is None:
            return default
        try:
            return operation(store)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self._recover(exc, store)
            return default

    def _recover(self, exc: sqlite3.DatabaseError, failed: diskcache.Cache) -> None:
        with self._lock:
            current = self._store
            if current is None or current is not failed:
                return
            current.close()
            try:
                self._store = replace_corrupted(self.directory, exc, self.label, **self._settings)
            except CACHE_FAILURES as again:
                self._store = None
                self.unavailable = f"{type(again).__name__}: {again}"
                logger.warning(
                    "%s cache at %s could not be rebuilt (%s); running without it",
                    self.label,
                    self.directory,
                    self.unavailable,
                )

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
