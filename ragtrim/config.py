"""The pipeline's configuration: one pydantic model, read from and written to YAML or JSON.

``stages`` maps each slot, in pipeline order, to ``{"type", "init_parameters"}`` (``null``
disables an optional slot); ``profiles`` maps a ``task_type`` to per-stage parameter
overrides (top-k, rerank depth, budget, thresholds, granularity...), applied by
``Pipeline.run(query, task_type=...)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragtrim.errors import ConfigError
from ragtrim.index.store import IndexConfig
from ragtrim.stage import validate_model

#: pipeline slots in execution order; ingestion uses the first two, queries the rest
SLOTS = ("chunker", "embedder", "filter", "retriever", "reranker", "dedup", "packer")
OPTIONAL_SLOTS = {"filter", "reranker", "dedup"}
QUERY_SLOTS = ("filter", "retriever", "reranker", "dedup")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    semantic: bool = False
    semantic_threshold: float = Field(0.95, gt=0, le=1)
    semantic_ttl_seconds: float | None = Field(None, gt=0)
    semantic_exclude_task_types: list[str] = Field(default_factory=list)


class PricingSettings(_Strict):
    model: str = "gpt-4o-mini"
    #: USD per million input tokens, added to or overriding the built-in table
    prices: dict[str, float] = Field(default_factory=dict)


class StageSpec(_Strict):
    type: str
    init_parameters: dict[str, Any] = Field(default_factory=dict)


class PipelineConfig(_Strict):
    version: int = 1
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
            raise ValueError(f"unknown stage slot(s) {unknown}; valid slots in order: {', '.join(SLOTS)}")
        missing = [name for name in SLOTS if name not in OPTIONAL_SLOTS and stages.get(name) is None]
        if missing:
            raise ValueError(f"required stage slot(s) missing: {missing}")
        return {name: stages.get(name) for name in SLOTS}

    @field_validator("profiles")
    @classmethod
    def _profile_slots(cls, profiles: dict[str, dict[str, dict[str, Any]]]) -> dict:
        for task_type, overrides in profiles.items():
            for slot in overrides:
                if slot not in SLOTS[2:]:
                    raise ValueError(
                        f"profile {task_type!r}: {slot!r} cannot be overridden per task type; "
                        f"valid: {', '.join(SLOTS[2:])}"
                    )
        return profiles


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
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (yaml.YAMLError, ValueError) as exc:
            raise ConfigError(f"{path}: malformed {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return validate_model(PipelineConfig, data, where)


def dump_config(config: PipelineConfig, path: str | Path | None = None, fmt: str | None = None) -> str:
    data = config.model_dump(mode="json")
    fmt = fmt or ("json" if path is not None and Path(path).suffix == ".json" else "yaml")
    text = json.dumps(data, indent=2) + "\n" if fmt == "json" else yaml.safe_dump(data, sort_keys=False)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
