"""Exact token counting, online or offline.

Budgets are only as good as the counts behind them, so every count is the tokenizer's own
count of the exact string emitted: no estimates, and no silent fallback when an encoding
cannot be loaded.

A tiktoken encoding needs its rank file. ``load_encoding`` looks for it locally first, in
order: ``RAGTRIM_TIKTOKEN_RANKS`` (a rank file, plain or gzip/xz-compressed, or a folder of
them), tiktoken's own cache (``TIKTOKEN_CACHE_DIR`` / ``DATA_GYM_CACHE_DIR`` /
``<tempdir>/data-gym-cache``, named by the sha1 of the file's URL) and the gzip-compressed
``o200k_base``/``cl100k_base`` copies shipped inside ragtrim (``ragtrim/data/tiktoken``; the
tiktoken MIT license covers them). Only when none holds it does tiktoken download the file, and
cache it, as it always does. Every file is checked against tiktoken's own sha256 hash before it
is used, so where a file came from can never change a count.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ragtrim.errors import ConfigError, TokenizerError

DEFAULT_ENCODING = "o200k_base"

RANKS_ENV = "RAGTRIM_TIKTOKEN_RANKS"

_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/"


@dataclass(frozen=True)
class _RankFileSpec:
    """One of tiktoken's rank files: its name, and the sha256 tiktoken expects of it."""

    name: str
    sha256: str

    @property
    def url(self) -> str:
        return f"{_BLOB_URL}{self.name}.tiktoken"

    @property
    def cache_key(self) -> str:
        """The file's name in tiktoken's cache (tiktoken names it by the sha1 of its URL)."""
        return hashlib.sha1(self.url.encode()).hexdigest()


# tiktoken's own URLs and hashes (tiktoken_ext/openai_public.py; a test checks they agree).
_RANK_FILES = {
    spec.name: spec
    for spec in (
        _RankFileSpec(
            "o200k_base", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
        ),
        _RankFileSpec(
            "cl100k_base", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
        ),
        _RankFileSpec(
            "p50k_base", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"
        ),
        _RankFileSpec(
            "r50k_base", "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
        ),
    )
}
# encoding -> the rank file its tiktoken constructor loads
_ENCODING_RANK_FILE = {
    "o200k_base": "o200k_base",
    "o200k_harmony": "o200k_base",
    "cl100k_base": "cl100k_base",
    "p50k_base": "p50k_base",
    "p50k_edit": "p50k_base",
    "r50k_base": "r50k_base",
}
# ragtrim ships the two rank files its model table maps to, gzip-compressed
_PACKAGED_RANK_FILES = ("o200k_base", "cl100k_base")
_PACKAGED_DIR = Path(__file__).resolve().parent / "data" / "tiktoken"

_MODEL_PREFIXES = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)

_env_lock = threading.Lock()


class _HFTokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


def encoding_for_model(model: str) -> str:
    """Map a model name to its tiktoken encoding (longest known prefix wins)."""
    for prefix, encoding in _MODEL_PREFIXES:
        if model == prefix or model.startswith(prefix):
            return encoding
    try:
        import tiktoken

        return str(tiktoken.encoding_name_for_model(model))
    except KeyError:
        known = ", ".join(p for p, _ in _MODEL_PREFIXES)
        raise ConfigError(
            f"tokenizer.model: no known encoding for model {model!r}; "
            f"use tokenizer.encoding instead, or a model starting with one of: {known}"
        ) from None


@dataclass(frozen=True)
class RankFile:
    """A local rank file that passed tiktoken's hash check: where it is and who provided it."""

    encoding: str
    path: Path
    source: str  # RANKS_ENV, "tiktoken cache" or "ragtrim package"
    data: bytes = field(repr=False)


_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"


def _read_rank_bytes(path: Path, source: str, fix: str) -> bytes:
    """The file's bytes, decompressed when it is gzip or xz (rank files are plain base64 text)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TokenizerError(
            f"cannot read tiktoken rank file {path} ({source}): {exc}; {fix}"
        ) from exc
    try:
        if raw.startswith(_GZIP_MAGIC):
            import gzip
            import zlib

            try:
                return gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as exc:
                raise ValueError(f"not a valid gzip file: {exc}") from exc
        if raw.startswith(_XZ_MAGIC):
            try:
                import lzma
            except ImportError as exc:
                raise ValueError(
                    f"xz-compressed, and this Python has no lzma module ({exc})"
                ) from exc

            try:
                return lzma.decompress(raw)
            except (lzma.LZMAError, EOFError) as exc:
                raise ValueError(f"not a valid xz file: {exc}") from exc
    except ValueError as exc:
        raise TokenizerError(f"tiktoken rank file {path} ({source}) is {exc}; {fix}") from exc
    return raw


def _checked(spec: _RankFileSpec, path: Path, source: str, fix: str) -> RankFile:
    data = _read_rank_bytes(path, source, fix)
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise TokenizerError(
            f"tiktoken rank file {path} ({source}) fails the hash check for {spec.name}: "
            f"sha256 {digest}, tiktoken expects {spec.sha256}; {fix}"
        )
    return RankFile(spec.name, path, source, data)


def _tiktoken_cache_dir() -> Path | None:
    """The folder tiktoken caches downloads in, by tiktoken's own rule; None when caching is off."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return Path(os.environ[var]) if os.environ[var] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _from_env(spec: _RankFileSpec) -> RankFile | None:
    value = os.environ.get(RANKS_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    fix = f"replace it with tiktoken's {spec.name}.tiktoken or unset {RANKS_ENV}"
    if path.is_dir():
        names = [f"{spec.name}.tiktoken{ext}" for ext in ("", ".gz", ".xz")] + [spec.cache_key]
        for candidate in (path / name for name in names):
            if candidate.is_file():
                return _checked(spec, candidate, RANKS_ENV, fix)
        return None
    if not path.is_file():
        raise TokenizerError(f"{RANKS_ENV}={value}: no such file or folder")
    data = _read_rank_bytes(path, RANKS_ENV, fix)
    digest = hashlib.sha256(data).hexdigest()
    if digest == spec.sha256:
        return RankFile(spec.name, path, RANKS_ENV, data)
    if any(digest == other.sha256 for other in _RANK_FILES.values()):
        return None  # a valid rank file of another encoding
    raise TokenizerError(
        f"{RANKS_ENV}={path}: not a tiktoken rank file that passes the hash check "
        f"(sha256 {digest}; {spec.name} is {spec.sha256}); {fix}"
    )


def _find_local(encoding: str) -> tuple[RankFile | None, list[str]]:
    """The first local source holding the encoding's rank file, and what was looked at."""
    spec = _RANK_FILES[_ENCODING_RANK_FILE[encoding]]
    looked: list[str] = []
    found = _from_env(spec)
    if found is not None:
        return found, looked
    looked.append(
        f"{RANKS_ENV} ({os.environ[RANKS_ENV]}) holds no {spec.name}"
        if os.environ.get(RANKS_ENV, "").strip()
        else f"{RANKS_ENV} is not set"
    )
    cache_dir = _tiktoken_cache_dir()
    if cache_dir is None:
        looked.append("tiktoken's cache is off (TIKTOKEN_CACHE_DIR is empty)")
    else:
        cached = cache_dir / spec.cache_key
        if cached.is_file():
            fix = "delete it (tiktoken downloads it again when online)"
            return _checked(spec, cached, "tiktoken cache", fix), looked
        looked.append(f"tiktoken's cache has no {cached}")
    if spec.name in _PACKAGED_RANK_FILES:
        packaged = _PACKAGED_DIR / f"{spec.name}.tiktoken.gz"
        if packaged.is_file():
            fix = "reinstall ragtrim (pip install --force-reinstall ragtrim)"
            return _checked(spec, packaged, "ragtrim package", fix), looked
        looked.append(f"this ragtrim install has no {packaged} (reinstall ragtrim)")
    return None, looked


def find_rank_file(encoding: str) -> RankFile | None:
    """The hash-checked local rank file ``load_encoding`` would use, or None (it would download).

    Raises ``TokenizerError`` for a local file that is there but fails the hash check.
    """
    if encoding not in _ENCODING_RANK_FILE:
        return None
    with _env_lock:
        return _find_local(encoding)[0]


@contextlib.contextmanager
def _tiktoken_cache_at(directory: str | None) -> Iterator[None]:
    """Point tiktoken's cache at ``directory`` (None: leave the user's setting) for one load.

    tiktoken reads its cache folder from the environment on every load, so the caller holds
    ``_env_lock``; other ragtrim loads wait, and no load sees another's folder.
    """
    if directory is None:
        yield
        return
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = directory
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


def _construct(tiktoken: Any, name: str, cache_dir: str | None) -> Any:
    # tiktoken's own constructor (pattern, special tokens, ranks through its hash check); called
    # directly rather than through tiktoken.get_encoding, whose process-wide registry would
    # return an encoding loaded earlier from another source
    from tiktoken_ext import openai_public

    with _tiktoken_cache_at(cache_dir):
        return tiktoken.Encoding(**openai_public.ENCODING_CONSTRUCTORS[name]())


def _remedies(spec_name: str) -> str:
    return (
        f"either let tiktoken download it (network access to {_BLOB_URL}; tiktoken then keeps it "
        f"in its cache), or point {RANKS_ENV} at a local copy of {spec_name}.tiktoken (plain, "
        ".gz or .xz) or at a folder holding it"
    )


@functools.lru_cache(maxsize=8)
def load_encoding(name: str) -> Any:
    """Load a tiktoken encoding from a local, hash-checked rank file, else through tiktoken.

    Raises ``TokenizerError`` naming the file when a local copy fails the hash check, and
    naming both remedies (download, or a local copy) when there is neither.
    """
    try:
        import tiktoken
    except ImportError as exc:  # pragma: no cover - tiktoken is a core dependency
        raise TokenizerError("tiktoken is not installed: pip install ragtrim") from exc
    if name not in _ENCODING_RANK_FILE:
        return _load_other(tiktoken, name)
    spec = _RANK_FILES[_ENCODING_RANK_FILE[name]]
    with _env_lock:  # held while reading the environment too: a load in flight changes it
        found, looked = _find_local(name)
        if found is None:
            try:
                return _construct(tiktoken, name, None)
            except Exception as exc:
                raise TokenizerError(
                    f"tiktoken encoding {name!r} is not available: no local {spec.name} rank "
                    f"file ({'; '.join(looked)}) and tiktoken's download failed "
                    f"({type(exc).__name__}: {exc}); {_remedies(spec.name)}"
                ) from exc
        # hand tiktoken the checked bytes under the name its cache uses, in a private folder,
        # so the load reads exactly what was checked and never touches the network
        try:
            with tempfile.TemporaryDirectory(prefix="ragtrim-tiktoken-") as tmp:
                (Path(tmp) / spec.cache_key).write_bytes(found.data)
                return _construct(tiktoken, name, tmp)
        except Exception as exc:
            raise TokenizerError(
                f"tiktoken encoding {name!r} failed to load from {found.path} "
                f"({found.source}): {type(exc).__name__}: {exc}"
            ) from exc


def _load_other(tiktoken: Any, name: str) -> Any:
    """An encoding ragtrim has no hash for (gpt2, plugins): tiktoken's own cache and download."""
    if name not in tiktoken.list_encoding_names():
        known = ", ".join(sorted(tiktoken.list_encoding_names()))
        raise TokenizerError(f"unknown tiktoken encoding {name!r}; known: {known}")
    with _env_lock:
        try:
            return tiktoken.get_encoding(name)
        except Exception as exc:
            raise TokenizerError(
                f"tiktoken encoding {name!r} is not available: tiktoken found no copy in its "
                f"cache ({_tiktoken_cache_dir()}) and its download failed "
                f"({type(exc).__name__}: {exc}); either let tiktoken download it (network "
                "access), or put tiktoken's cached copy in TIKTOKEN_CACHE_DIR"
            ) from exc


class TokenCounter:
    """Counts tokens exactly, with a tiktoken encoding, a model name, or a user tokenizer.

    ``counter`` may be a callable ``str -> int`` or a Hugging Face tokenizer (anything with
    ``encode``); its ``name`` is then what identifies it in configs and cache keys.
    """

    def __init__(
        self,
        encoding: str | None = None,
        *,
        model: str | None = None,
        counter: Callable[[str], int] | _HFTokenizer | None = None,
        name: str | None = None,
    ) -> None:
        if sum(x is not None for x in (encoding, model, counter)) > 1:
            raise ConfigError("tokenizer: give only one of encoding, model or counter")
        self._encoding: Any = None
        self._count: Callable[[str], int]
        if counter is not None:
            if hasattr(counter, "encode"):
                tokenizer = counter
                self._count = lambda text: len(tokenizer.encode(text, add_special_tokens=False))
            elif callable(counter):
                self._count = counter
            else:
                raise ConfigError("tokenizer.counter must be a callable or have an encode() method")
            self.name = name or getattr(counter, "name_or_path", None) or repr(counter)
            self.encoding_name: str | None = None
        else:
            self.encoding_name = (
                encoding_for_model(model) if model else encoding or DEFAULT_ENCODING
            )
            self._encoding = load_encoding(self.encoding_name)
            self.name = self.encoding_name
            self._count = self._tiktoken_count

    def _tiktoken_count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def count(self, text: str) -> int:
        return self._count(text) if text else 0

    def count_many(self, texts: Sequence[str]) -> list[int]:
        # a plain loop: tiktoken's batch call starts an 8-thread pool per call, which measured
        # slower (0.36 s vs 0.26 s for 5.9k blocks) on 2 cores
        return [self.count(t) for t in texts]

    def token_starts(self, text: str) -> list[int]:
        """Char offset where each token starts (tiktoken only), for cutting text on token bounds."""
        if self._encoding is None:
            raise ConfigError(f"token offsets need a tiktoken encoding, not {self.name!r}")
        _, offsets = self._encoding.decode_with_offsets(self._encoding.encode_ordinary(text))
        return list(offsets)

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` that counts at most ``max_tokens``."""
        if max_tokens <= 0 or not text:
            return ""
        if self.count(text) <= max_tokens:
            return text
        if self._encoding is not None:
            ids = self._encoding.encode_ordinary(text)[:max_tokens]
            # a token may end inside a multi-byte character: drop the partial character
            prefix = self._encoding.decode_bytes(ids).decode("utf-8", errors="ignore")
            # tiktoken reads a lone surrogate as one U+FFFD: take the characters themselves,
            # so a truncated passage is still the document's text at its offsets
            prefix = text[: len(prefix)]
            # re-tokenising a prefix can merge differently at its end; shrink until it fits
            while prefix and self.count(prefix) > max_tokens:
                prefix = prefix[:-1]
            return prefix
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.count(text[:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        return text[:lo]

    def __repr__(self) -> str:
        return f"TokenCounter({self.name!r})"


@functools.lru_cache(maxsize=16)
def get_counter(encoding: str = DEFAULT_ENCODING) -> TokenCounter:
    """A shared counter per encoding (loading an encoding costs ~0.5 s)."""
    return TokenCounter(encoding)
