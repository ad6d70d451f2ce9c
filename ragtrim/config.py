"""The pipeline's configuration: one pydantic model, read from and written to YAML or JSON.

``stages`` maps each slot, in pipeline order, to ``{"type", "init_parameters"}`` (``null``
disables an optional slot); ``profiles`` maps a ``task_type`` to per-stage parameter
overrides (top-k, rerank depth, budget, thresholds, granularity...), applied by
``Pipeline.run(query, task_type=...)``.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragtrim.errors import ConfigError
from ragtrim.index.store import IndexConfig

#: pipeline slots in execution order; ingestion uses the first two, queries the rest
SLOTS = ("chunker", "embedder", "filter", "retriever", "reranker", "dedup", "packer")
OPTIONAL_SLOTS = {"filter", "reranker", "dedup"}
QUERY_SLOTS = ("filter", "retriever", "reranker", "dedup")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TokenizerSettings(_Strict):
    encoding: str = "o200k_base"
    #: a model name (``gpt-4o``...) picks its encoding instead
    model: str | None = None


class CacheSettings(_Strict):
    #: default: $RAGTRIM_CACHE_DIR, else the user cache dir
    directory: str | None = None
    embeddings: bool = True
    retrieval: bool = True
    retrieval_ttl_seconds: float | None = Field(None, gt=0)
    #: cross-encoder scores, keyed by (model, query, passage text)
    rerank_scores: bool = True
    semantic: bool = False
    #: measured on the bundled paraphrase set: benchmarks/results/semantic_cache_kestrel.md
    semantic_threshold: float = Field(0.93, gt=0, le=1)
    semantic_ttl_seconds: float | None = Field(None, gt=0)
    semantic_exclude_task_types: list[str] = Field(default_factory=list)


class PricingSettings(_Strict):
    #: USD per million input tokens, added to or overriding the built-in table
    prices: dict[str, float] = Field(default_factory=dict)
    model: str = "gpt-4o-mini"

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str, info) -> str:
        """A misspelt model must fail when the config is read, not at the first query."""
        from ragtrim.packing.pricing import INPUT_PRICE_PER_MILLION

        known = {**INPUT_PRICE_PER_MILLION, **info.data.get("prices", {})}
        if model not in known:
            raise ValueError(
                f"no input price for {model!r}; add it under pricing.prices or use one "
                f"of: {', '.join(sorted(known))}"
            )
        return model


class StageSpec(_Strict):
    type: str
    init_parameters: dict[str, Any] = Field(default_factory=dict)


class PipelineConfig(_Strict):
    #: the config format; a future format will be rejected, not misread
    version: Literal[1] = 1
    tokenizer: TokenizerSettings = Field(default_factory=TokenizerSettings)
    index: IndexConfig = Field(default_factory=IndexConfig)
    stages: dict[str, StageSpec | None]
    profiles: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    pricing: PricingSettings = Field(default_factory=PricingSettings)

    @field_validator("stages")
    @classmethod
    def _slots(cls, stages: dict[str, StageSpec | None]) -> dict[str, StageSpec | None]:
        unknown = [name for name in stages if name not in SLOTS]
        if unknown:
            raise ValueError(
                f"unknown stage slot(s) {', '.join(map(repr, unknown))}; "
                f"valid slots in order: {', '.join(SLOTS)}"
            )
        missing = [
            name for name in SLOTS if name not in OPTIONAL_SLOTS and stages.get(name) is None
        ]
        if missing:
            raise ValueError(
                f"required stage slot(s) missing or null: {', '.join(map(repr, missing))}; "
                f"only {', '.join(sorted(OPTIONAL_SLOTS))} may be null"
            )
        return {name: stages.get(name) for name in SLOTS}

    @field_validator("profiles")
    @classmethod
    def _profile_slots(cls, profiles: dict[str, dict[str, dict[str, Any]]]) -> dict:
        for task_type, overrides in profiles.items():
            for slot in overrides:
                if slot not in SLOTS[2:]:
                    raise ValueError(
                        f"profile {task_type!r} overrides stage {slot!r}, which cannot be "
                        f"overridden per task type; valid stages: {', '.join(SLOTS[2:])}"
                    )
        return profiles


#: a config is a small tree: deeper nesting or more values (YAML aliases expand: a 500-byte
#: "billion laughs" is billions of values) is rejected before anything walks it
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_VALUES = 100_000


def check_config_shape(data: Any, where: str) -> None:
    """Raise ``ConfigError`` if ``data`` nests deeper than ``MAX_CONFIG_DEPTH``, would expand
    (aliases counted at every use) to more than ``MAX_CONFIG_VALUES`` values, or contains
    itself. Iterative, and linear in the *distinct* nodes, so the check itself cannot blow up.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(data, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if not isinstance(node, (Mapping, list, tuple)):
            continue
        key = id(node)
        children = list(node.values()) if isinstance(node, Mapping) else list(node)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(
                sizes.get(id(c), 1) if isinstance(c, (Mapping, list, tuple)) else 1
                for c in children
            )
            if sizes[key] > MAX_CONFIG_VALUES:
                raise ConfigError(
                    f"{where}: expands to more than {MAX_CONFIG_VALUES} values (YAML aliases "
                    "count at every use); a pipeline config is much smaller"
                )
            continue
        if key in on_path:
            raise ConfigError(f"{where}: a value contains itself (recursive YAML alias)")
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{where}: nested more than {MAX_CONFIG_DEPTH} levels deep")
        if key in sizes:
            continue
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in children)


def load_config(source: str | Path | Mapping[str, Any]) -> PipelineConfig:
    """Read a config from a dict, or a ``.yaml``/``.yml``/``.json`` file."""
    if isinstance(source, Mapping):
        data: Any = dict(source)
        where = "config"
    else:
        path = Path(source)
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (yaml.YAMLError, ValueError) as exc:
            raise ConfigError(f"{path}: {_parse_problem(exc, path.suffix == '.json')}") from None
        except RecursionError:
            raise ConfigError(
                f"{path}: nested too deeply to parse (a config nests at most "
                f"{MAX_CONFIG_DEPTH} levels)"
            ) from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping at the top level, got {type(data).__name__}"
        )
    check_config_shape(data, where)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_config_error(exc, where)) from None


def _parse_problem(exc: Exception, is_json: bool) -> str:
    """One line: what is wrong and where (YAML and JSON errors span several lines)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    kind = "JSON" if is_json else "YAML"
    if mark is not None:
        return f"malformed {kind} at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"malformed {kind}: {problem}"


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model that holds the field at ``path`` (``("cache", "foo")`` -> CacheSettings)."""
    model: Any = PipelineConfig
    for step in path[:-1]:
        annotation: Any = None
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(step))
            annotation = field.annotation if field is not None else None
        elif typing.get_origin(model) is dict:
            annotation = typing.get_args(model)[1]
        if annotation is None:
            return None
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        model = annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def describe_config_error(exc: ValidationError, where: str) -> str:
    """One clause per problem, each naming the field path and, for unknown keys, the valid ones."""
    lines = []
    for error in exc.errors():
        location = ".".join([where, *(str(p) for p in error["loc"])])
        if error["type"] == "extra_forbidden":
            model = _model_at(error["loc"])
            valid = ", ".join(sorted(model.model_fields)) if model else "see the documentation"
            lines.append(f"{location}: unknown key; valid keys: {valid}")
        elif error["type"] == "value_error":
            lines.append(f"{location}: {error['ctx']['error']}")
        else:
            given = error.get("input")
            shown = repr(given) if not isinstance(given, Mapping) else "{...}"
            lines.append(f"{location}: {error['msg']} (got {shown[:80]})")
    return "; ".join(lines)


def dump_config(
    config: PipelineConfig, path: str | Path | None = None, fmt: str | None = None
) -> str:
    data = config.model_dump(mode="json")
    fmt = fmt or ("json" if path is not None and Path(path).suffix == ".json" else "yaml")
    text = (
        json.dumps(data, indent=2) + "\n"
        if fmt == "json"
        else yaml.safe_dump(data, sort_keys=False)
    )
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
