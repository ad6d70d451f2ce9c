"""An embedder that runs a sentence-transformers model through ONNX Runtime, without torch.

The default MiniLM is 22M parameters: ``onnxruntime`` + ``tokenizers`` run it in a base install
(no torch, no sentence-transformers), in fp32 or dynamically quantised int8. Tokenisation,
truncation, pooling and normalisation follow the model's own files (``tokenizer.json``,
``modules.json``, ``1_Pooling/config.json``), so fp32 vectors match sentence-transformers'.

Where the ONNX graph comes from, in order:

1. the model directory itself (``onnx/model.onnx`` or ``model.onnx``: a directory written by
   ``ragtrim export-onnx``, or a hub snapshot that ships one);
2. ``<onnx_dir>/<model fingerprint>/model.fp32.onnx``, exported earlier on this machine;
3. an export from the model's weights now, which needs torch (``ragtrim[torch]``).

int8 graphs are quantised from the fp32 one (``onnxruntime.quantization.quantize_dynamic``,
per-channel int8 weights; no torch needed) and kept next to it. Files are written to a
temporary name and renamed, so a crash never leaves a half-written graph; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from ragtrim.cachedir import default_cache_dir
from ragtrim.embedding.models import (
    DEFAULT_EMBEDDING_MODEL,
    TORCH_EXTRA,
    l2_normalize,
    model_content_identity,
    prefixed,
    resolve_model_source,
    vector_fingerprint,
)
from ragtrim.embedding.onnx_export import atomic_target
from ragtrim.errors import ConfigError, MissingDependencyError
from ragtrim.stage import Stage, StageConfig

if TYPE_CHECKING:
    from onnxruntime import InferenceSession
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]

#: bumped when the export or quantisation recipe changes, so old graphs and vectors stop matching
ONNX_RECIPE_VERSION = 1
#: ``quantize_dynamic`` settings of the int8 graphs (in the fingerprint via the recipe version).
#: Per-channel weights: per-tensor int8 MiniLM gave cosines of 0.89-0.96 to torch on 5 probe
#: texts, per-channel 0.977-0.994 (measured while choosing the recipe); MatMul-only weights
#: gave similar cosines (0.982-0.995) at 2.5x the size. Figures on SciFact texts:
#: benchmarks/results/embedders.md
_QUANTIZE_OPTIONS: dict[str, Any] = {"per_channel": True, "reduce_range": False}
_SHIPPED_ONNX = ("onnx/model.onnx", "model.onnx")
_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}
_SUPPORTED_POOLING = frozenset(_POOLING_FLAGS.values())
_SMALL_BATCH = 8


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read model file: {exc}") from None


class ModelLayout:
    """What an ONNX run needs from a sentence-transformers directory, read from its files.

    Only Transformer -> Pooling [-> Normalize] pipelines are supported; anything else (a Dense
    projection, a custom module) is a :class:`ConfigError` naming ``modules.json``, because
    silently skipping a module would change the vectors.
    """

    def __init__(self, source: Path) -> None:
        self.source = source
        modules_path = source / "modules.json"
        if modules_path.is_file():
            modules = _read_json(modules_path)
        else:  # a bare transformer: sentence-transformers defaults to mean pooling
            modules = [{"type": "Transformer", "path": ""}]
        self.transformer_dir = source
        self.pooling = "mean"
        pooling_seen = False
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            path = source / str(module.get("path", ""))
            if kind == "Transformer":
                self.transformer_dir = path
            elif kind == "Pooling":
                self.pooling = self._pooling_mode(path / "config.json")
                pooling_seen = True
            elif kind != "Normalize":
                raise ConfigError(
                    f"{modules_path}: module {module.get('type')!r} is not supported by "
                    "OnnxEmbedder (Transformer, Pooling and Normalize are); use "
                    "SentenceTransformerEmbedder for this model"
                )
        if modules_path.is_file() and not pooling_seen:
            raise ConfigError(f"{modules_path}: no Pooling module; OnnxEmbedder needs one")
        tokenizer_path = self.transformer_dir / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise ConfigError(
                f"{tokenizer_path}: missing; OnnxEmbedder needs a fast-tokenizer file "
                "(save the tokenizer with transformers, or use SentenceTransformerEmbedder)"
            )
        self.tokenizer_path = tokenizer_path
        self.max_seq_length, self.do_lower_case = self._limits()

    def _pooling_mode(self, path: Path) -> str:
        config = _read_json(path)
        mode = config.get("pooling_mode")
        if mode is None:
            modes = [name for flag, name in _POOLING_FLAGS.items() if config.get(flag)]
            others = [k for k, v in config.items() if k.startswith("pooling_mode") and v]
            if len(modes) != 1 or len(others) != 1:
                raise ConfigError(
                    f"{path}: pooling {sorted(others)} is not supported by OnnxEmbedder "
                    f"(exactly one of {', '.join(sorted(_SUPPORTED_POOLING))})"
                )
            mode = modes[0]
        if mode not in _SUPPORTED_POOLING:
            raise ConfigError(
                f"{path}: pooling_mode {mode!r} is not supported by OnnxEmbedder "
                f"(supported: {', '.join(sorted(_SUPPORTED_POOLING))})"
            )
        return str(mode)

    def _limits(self) -> tuple[int | None, bool]:
        """The input limit sentence-transformers applies, and its lower-casing flag.

        Its own ``max_seq_length`` (``sentence_bert_config.json``) if set, else the tokenizer's
        ``model_max_length``; capped by the position embeddings either way.
        """
        sbert_path = self.transformer_dir / "sentence_bert_config.json"
        sbert = _read_json(sbert_path) if sbert_path.is_file() else {}
        tokenizer_config_path = self.transformer_dir / "tokenizer_config.json"
        tokenizer_config = (
            _read_json(tokenizer_config_path) if tokenizer_config_path.is_file() else {}
        )
        config_path = self.transformer_dir / "config.json"
        config = _read_json(config_path) if config_path.is_file() else {}
        limit = sbert.get("max_seq_length")
        if not isinstance(limit, int):
            limit = tokenizer_config.get("model_max_length")
            if not isinstance(limit, int) or limit >= 1_000_000:
                limit = None
        positions = config.get("max_position_embeddings")
        if isinstance(positions, int) and positions > 0:
            limit = positions if limit is None else min(limit, positions)
        return limit, bool(sbert.get("do_lower_case", False))

    @property
    def dimension(self) -> int | None:
        config_path = self.transformer_dir / "config.json"
        hidden = _read_json(config_path).get("hidden_size") if config_path.is_file() else None
        return int(hidden) if isinstance(hidden, int) else None

    def shipped_onnx(self) -> Path | None:
        for relative in _SHIPPED_ONNX:
            for base in dict.fromkeys((self.source, self.transformer_dir)):
                candidate = base / relative
                if candidate.is_file():
                    return candidate
        return None


def quantize_int8(fp32: Path, destination: Path) -> Path:
    """Dynamically quantise ``fp32`` to int8 weights at ``destination`` (atomically)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise MissingDependencyError(
            f"onnxruntime.quantization could not be imported ({exc}); int8 needs the 'onnx' "
            "package: pip install onnx (a dependency of ragtrim)"
        ) from None
    tmp = atomic_target(destination)
    try:
        # quantize_dynamic logs a generic "consider pre-processing" hint at WARNING
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8, **_QUANTIZE_OPTIONS)
        finally:
            root.setLevel(level)
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("quantised %s to int8 at %s", fp32, destination)
    return destination


class OnnxEmbedder(Stage):
    """A sentence-transformers bi-encoder run by ONNX Runtime; float32 rows, normalised.

    ``precision="int8"`` runs a dynamically quantised graph (faster, slightly different
    vectors), one text per run. ``threads`` sets ONNX Runtime's intra-op threads for large
    calls (``None``: its default, one per core); ``small_batch_threads`` those for calls of
    <= 8 texts (one query), as in :class:`~ragtrim.embedding.models.SentenceTransformerEmbedder`.
    Texts longer than the model's limit are truncated, counted in ``truncated_texts`` and
    logged once, as there.
    ``onnx_dir`` is where exported graphs are kept (default ``<cache dir>/onnx``).
    """

    kind = "embedder"

    class Config(StageConfig):
        model: str = Field(DEFAULT_EMBEDDING_MODEL, min_length=1)
        revision: str | None = None
        precision: Precision = "int8"
        #: texts per run; int8 must run each text alone (see ``_one_text_per_int8_run``)
        batch_size: int = Field(1, gt=0)
        normalize: bool = True
        max_seq_length: int | None = Field(None, gt=0)
        query_prefix: str = ""
        passage_prefix: str = ""
        threads: int | None = Field(None, gt=0)
        small_batch_threads: int | None = Field(1, gt=0)
        onnx_dir: str | None = None

        @field_validator("batch_size")
        @classmethod
        def _one_text_per_int8_run(cls, batch_size: int, info: ValidationInfo) -> int:
            """WHY: dynamic quantisation scales activations over the whole run, padding and
            neighbours included, so in a batch a text's int8 vector depends on the texts
            beside it (measured: cosine 0.9916 alone vs in a batch of 64 SciFact abstracts).
            Caches assume one text, one vector; alone, it is also no slower (measured 19.1 vs
            13.1 chunks/s on 1 loaded core, batch 1 vs 32)."""
            if info.data.get("precision") == "int8" and batch_size != 1:
                raise ValueError(
                    "int8 embeds one text per run (its vectors would depend on the batch "
                    "otherwise); use batch_size=1 or precision='fp32'"
                )
            return batch_size

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._source: Path | None = None
        self._layout: ModelLayout | None = None
        self._fingerprint: str | None = None
        self._sessions: dict[int | None, InferenceSession] = {}
        self._graph: Path | None = None
        self._tokenizer: Tokenizer | None = None
        self._truncating: Tokenizer | None = None
        self._max_tokens: int | None = None
        self._lock = threading.Lock()
        #: how many texts were truncated to ``max_tokens`` by ``embed`` so far
        self.truncated_texts = 0

    # ------------------------------------------------------------------ model files
    def _resolved_layout(self) -> ModelLayout:
        if self._layout is None:
            if self._source is None:
                self._source = resolve_model_source(
                    self.config.model, self.config.revision, hub_backend="onnx"
                )
            self._layout = ModelLayout(self._source)
        return self._layout

    def _export_dir(self) -> Path:
        base = (
            Path(self.config.onnx_dir).expanduser()
            if self.config.onnx_dir
            else default_cache_dir() / "onnx"
        )
        layout = self._resolved_layout()
        key = hashlib.sha256(
            f"{model_content_identity(layout.source)}|recipe{ONNX_RECIPE_VERSION}".encode()
        ).hexdigest()[:32]
        return base / key

    def fp32_graph(self) -> Path:
        """The fp32 ONNX file: shipped with the model, exported earlier, or exported now."""
        layout = self._resolved_layout()
        shipped = layout.shipped_onnx()
        if shipped is not None:
            return shipped
        exported = self._export_dir() / "model.fp32.onnx"
        if exported.is_file():
            return exported
        from ragtrim.embedding.onnx_export import export_transformer

        try:
            return export_transformer(layout.transformer_dir, exported)
        except MissingDependencyError:
            raise MissingDependencyError(
                f"OnnxEmbedder.model: no ONNX file for {self.config.model!r} (looked for "
                f"{', '.join(_SHIPPED_ONNX)} in {layout.source} and for {exported}), and "
                f"exporting one needs torch: pip install 'ragtrim[{TORCH_EXTRA}]', or run "
                f"`ragtrim export-onnx --model {self.config.model} --out DIR` where torch is "
                "installed and pass model=DIR"
            ) from None

    def graph(self) -> Path:
        """The ONNX file this embedder runs (``precision`` decides which)."""
        fp32 = self.fp32_graph()
        if self.config.precision == "fp32":
            return fp32
        int8 = self._export_dir() / "model.int8.onnx"
        if not int8.is_file():
            quantize_int8(fp32, int8)
        return int8

    # ------------------------------------------------------------------ loading
    def warm_up(self) -> None:
        with self._lock:
            if self._tokenizer is None:
                self._load()

    def _load(self) -> None:
        try:
            import onnxruntime  # noqa: F401
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingDependencyError(
                f"{exc.name} is not installed; it is a dependency of ragtrim: pip install ragtrim"
            ) from None
        layout = self._resolved_layout()
        limit = layout.max_seq_length
        wanted = self.config.max_seq_length
        if wanted is not None:
            if limit is not None and wanted > limit:
                raise ConfigError(
                    f"OnnxEmbedder.max_seq_length: {wanted} exceeds the {limit}-token limit of "
                    f"model {self.config.model!r}"
                )
            limit = wanted
        tokenizer = Tokenizer.from_file(str(layout.tokenizer_path))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        truncating = Tokenizer.from_file(str(layout.tokenizer_path))
        truncating.no_padding()
        if limit is not None:
            # as transformers' truncation=True: content is cut, special tokens are kept
            truncating.enable_truncation(max_length=limit)
        self._truncating = truncating
        self._graph = self.graph()
        self._sessions[self.config.threads] = self._session(self.config.threads)
        self._max_tokens = limit
        self._tokenizer = tokenizer
        logger.debug("loaded ONNX embedding graph %s for %r", self._graph, self.config.model)

    def _session(self, threads: int | None) -> InferenceSession:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        # WHY: idle worker threads spin-wait by default; on cores that other processes keep
        # busy that costs far more than it saves (see small_batch_threads on the torch embedder)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(
                str(self._graph), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise ConfigError(f"{self._graph}: ONNX Runtime cannot load this graph: {exc}") from exc

    def _session_for(self, count: int) -> InferenceSession:
        threads = (
            self.config.small_batch_threads
            if count <= _SMALL_BATCH and self.config.small_batch_threads is not None
            else self.config.threads
        )
        with self._lock:
            session = self._sessions.get(threads)
            if session is None:
                session = self._sessions[threads] = self._session(threads)
        return session

    def _loaded_tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self.warm_up()
        assert self._tokenizer is not None
        return self._tokenizer

    # ------------------------------------------------------------------ identity
    @property
    def dimension(self) -> int:
        self._loaded_tokenizer()
        dimension = self._resolved_layout().dimension
        if dimension is None:
            raise ConfigError(
                f"OnnxEmbedder.model: {self.config.model!r} does not declare hidden_size in "
                "config.json"
            )
        return dimension

    @property
    def known_dimension(self) -> int | None:
        """``dimension`` once loaded, else ``None`` (never loads the graph)."""
        return self.dimension if self._tokenizer is not None else None

    @property
    def max_tokens(self) -> int | None:
        """The model's input limit in its own tokens (special tokens included)."""
        self._loaded_tokenizer()
        return self._max_tokens

    @property
    def fingerprint(self) -> str:
        """Backend, precision, recipe, model id and content, and every vector-changing setting.

        Never equal to the torch embedder's or to the other precision's, so the embedding cache
        and saved indexes never mix their vectors.
        """
        if self._fingerprint is None:
            cfg = self.config
            self._fingerprint = vector_fingerprint(
                f"onnx-{cfg.precision}",
                cfg,
                model_content_identity(self._resolved_layout().source),
                backend="onnx",
                precision=cfg.precision,
                recipe=ONNX_RECIPE_VERSION,
            )
        return self._fingerprint

    # ------------------------------------------------------------------ embedding
    def _prefixed(self, texts: Sequence[str], kind: str) -> list[str]:
        items = prefixed(texts, kind, self.config)
        if self._resolved_layout().do_lower_case:
            items = [text.lower() for text in items]
        return items

    def count_model_tokens(self, texts: Sequence[str], kind: str = "passage") -> list[int]:
        """Exact model-token counts (prefix and special tokens included), before truncation."""
        inputs = self._prefixed(texts, kind)
        encodings = self._loaded_tokenizer().encode_batch(inputs, add_special_tokens=True)
        return [len(e.ids) for e in encodings]

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        """One float32 row per text, shape ``(len(texts), dimension)``."""
        inputs = self._prefixed(texts, kind)
        tokenizer = self._loaded_tokenizer()
        if not inputs:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encodings = tokenizer.encode_batch(inputs, add_special_tokens=True)
        lengths = [len(e.ids) for e in encodings]
        self._count_truncated(lengths)
        limit = self._max_tokens
        if limit is not None and max(lengths) > limit:
            assert self._truncating is not None
            over = [i for i, n in enumerate(lengths) if n > limit]
            cut = self._truncating.encode_batch([inputs[i] for i in over], add_special_tokens=True)
            for i, encoding in zip(over, cut, strict=True):
                encodings[i] = encoding
                lengths[i] = len(encoding.ids)
        session = self._session_for(len(inputs))
        wanted = {i.name for i in session.get_inputs()}
        output = _hidden_state_output(session, self._graph)
        pooling = self._resolved_layout().pooling
        out = np.empty((len(inputs), self.dimension), dtype=np.float32)
        # longest first, as sentence-transformers does, so each batch pads little
        order = sorted(range(len(inputs)), key=lambda i: -lengths[i])
        for start in range(0, len(order), self.config.batch_size):
            batch = order[start : start + self.config.batch_size]
            width = max(lengths[i] for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            types = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = lengths[i]
                ids[row, :n] = encodings[i].ids
                types[row, :n] = encodings[i].type_ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            hidden = session.run([output], {k: v for k, v in feed.items() if k in wanted})[0]
            out[batch] = _pool(np.asarray(hidden, dtype=np.float32), mask, pooling)
        return l2_normalize(out) if self.config.normalize else out

    def _count_truncated(self, lengths: list[int]) -> None:
        limit = self._max_tokens
        if limit is None:
            return
        over = [n for n in lengths if n > limit]
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
                len(lengths),
                max(over),
            )
        self.truncated_texts += len(over)


def _hidden_state_output(session: InferenceSession, graph: Path | None) -> str:
    """The graph's token-vector output: ``last_hidden_state``, or its only output."""
    names = [o.name for o in session.get_outputs()]
    for name in ("last_hidden_state", "token_embeddings"):
        if name in names:
            return name
    if len(names) == 1:
        return names[0]
    raise ConfigError(
        f"{graph}: no last_hidden_state output among {names}; OnnxEmbedder needs the "
        "transformer's token vectors"
    )


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Pool token vectors as sentence-transformers' Pooling module does."""
    if mode == "cls":
        return hidden[:, 0]
    weights = mask[:, :, None].astype(np.float32)
    if mode == "max":
        return np.where(weights > 0, hidden, -1e9).max(axis=1)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    return summed / (np.sqrt(counts) if mode == "mean_sqrt_len" else counts)


#: model files copied into an exported directory (tokenizer, configs, pooling); never weights
_COPIED_SUFFIXES = frozenset({".json", ".txt", ".model", ".vocab"})


def export_model_dir(
    model: str, out: Path, revision: str | None = None, onnx_dir: str | None = None
) -> Path:
    """Write a self-contained ONNX model directory at ``out`` (which must not exist).

    It holds the model's tokenizer, config and pooling files and ``onnx/model.onnx`` (fp32),
    so ``OnnxEmbedder(model=str(out))`` runs on a machine without torch. The directory is
    assembled beside ``out`` and renamed into place.
    """
    import shutil

    if out.exists():
        raise ConfigError(f"{out}: already exists; choose a new directory for the export")
    embedder = OnnxEmbedder(model=model, revision=revision, precision="fp32", onnx_dir=onnx_dir)
    graph = embedder.fp32_graph()
    layout = embedder._resolved_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent))
    try:
        for path in sorted(layout.source.rglob("*")):
            relative = path.relative_to(layout.source)
            if (
                path.is_file()
                and path.suffix.lower() in _COPIED_SUFFIXES
                and not any(part.startswith(".") or part == "onnx" for part in relative.parts)
            ):
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, staging / relative)
        (staging / "onnx").mkdir()
        shutil.copyfile(graph, staging / "onnx" / "model.onnx")
        staging.chmod(0o755)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
