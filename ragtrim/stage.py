"""The stage contract: constructor arguments are the configuration.

A stage declares a pydantic ``Config``; ``Stage(**params)`` validates the parameters against it
(unknown names and wrong types fail with the stage, the field and the valid names), keeps
``__init__`` light, and loads heavy state lazily in ``warm_up()``. Every stage serialises to
one shape, ``{"type": ..., "init_parameters": {...}}``, and ``from_dict`` rebuilds an equal
stage. Each stage has one ``run`` method; the pipeline composes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from ragtrim.errors import ConfigError

_REGISTRY: dict[str, type[Stage]] = {}


#: the largest value a ``*_weight`` parameter may take. Weights are relative (they mix
#: normalised scores); a weight of 1e308 overflows the mix to inf/NaN and empties the context.
MAX_WEIGHT = 1e6


class StageConfig(BaseModel):
    """Base of every stage's config: unknown keys are errors, values are immutable, numbers
    are finite and weights (fields named ``*_weight``) at most :data:`MAX_WEIGHT`."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )

    @field_validator("*", mode="after")
    @classmethod
    def _sane_weight(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        if name.endswith("_weight") and isinstance(value, (int, float)) and value > MAX_WEIGHT:
            raise ValueError(f"must be at most {MAX_WEIGHT:g} (weights are relative)")
        return value


def describe_validation_error(exc: ValidationError, where: str, model: type[BaseModel]) -> str:
    """One line per problem, naming ``where.field`` and, for unknown fields, the valid ones."""
    lines = []
    for error in exc.errors():
        path = ".".join(str(p) for p in error["loc"])
        location = f"{where}.{path}" if path else where
        if error["type"] == "extra_forbidden":
            valid = ", ".join(sorted(model.model_fields))
            lines.append(f"{location}: unknown parameter; valid parameters: {valid}")
        elif error["type"] == "value_error" and "error" in error.get("ctx", {}):
            given = error.get("input")
            shown = "" if isinstance(given, Mapping) else f" (got {given!r:.80})"
            lines.append(f"{location}: {error['ctx']['error']}{shown}")
        else:
            given = error.get("input")
            shown = repr(given) if not isinstance(given, Mapping) else "{...}"
            lines.append(f"{location}: {error['msg']} (got {shown[:80]})")
    return "; ".join(lines)


def validate_model(model: type[BaseModel], data: Any, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, where, model)) from None


class Stage:
    """Base class of chunkers, embedders, filters, retrievers, rerankers, dedupers and packers."""

    Config: ClassVar[type[StageConfig]] = StageConfig
    #: the pipeline slot this stage fills ("chunker", "retriever", ...)
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.__name__] = cls

    def __init__(self, **params: Any) -> None:
        self.config = validate_model(self.Config, params, type(self).__name__)

    def warm_up(self) -> None:
        """Load models or other heavy state; called once before the first ``run``."""

    def with_params(self, **overrides: Any) -> Stage:
        """A new stage of the same type with some parameters replaced (used by task profiles)."""
        if not overrides:
            return self
        params = self.config.model_dump()
        params.update(overrides)
        return type(self)(**params)

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "init_parameters": self.config.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "stage") -> Stage:
        if not isinstance(data, Mapping) or "type" not in data:
            raise ConfigError(f"{where}: expected a mapping with 'type' and 'init_parameters'")
        unknown = set(data) - {"type", "init_parameters"}
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {sorted(unknown)}; valid keys: type, init_parameters"
            )
        stage_type = data["type"]
        stage_cls = _REGISTRY.get(stage_type)
        if stage_cls is None or (cls is not Stage and not issubclass(stage_cls, cls)):
            valid = ", ".join(available_stages(cls.kind or None))
            raise ConfigError(f"{where}.type: unknown stage type {stage_type!r}; valid: {valid}")
        params = data.get("init_parameters") or {}
        if not isinstance(params, Mapping):
            raise ConfigError(f"{where}.init_parameters: expected a mapping")
        try:
            return stage_cls(**params)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.config == other.config  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.config.model_dump_json()))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"


def available_stages(kind: str | None = None) -> list[str]:
    return sorted(name for name, c in _REGISTRY.items() if kind is None or c.kind == kind)


def stage_class(name: str) -> type[Stage]:
    return _REGISTRY[name]
