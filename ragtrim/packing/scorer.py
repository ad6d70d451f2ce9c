"""The learned unit scorer: a logistic regression over the packer's unit features.

It turns a unit's features into the probability that the unit is evidence for the question (a
gold sentence, or a sentence that holds the answer). Inference is one standardised dot product
per unit in numpy. The parameters are a small JSON file, never a pickle: feature names, their
training mean and scale, the weights and bias, and how they were fitted (data sets, split,
command), so a file fitted on other features is refused instead of silently misread.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtrim.errors import ConfigError
from ragtrim.packing.features import FEATURES

FORMAT = "ragtrim-unit-scorer"
VERSION = 1
#: the parameters shipped with ragtrim (``benchmarks/fit_unit_scorer.py`` writes them)
DEFAULT_PATH = Path(__file__).with_name("unit_scorer.json")


@dataclass(frozen=True)
class UnitScorer:
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    training: Mapping[str, Any] = field(default_factory=dict)

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """P(evidence) per row of ``matrix`` (columns in ``FEATURES`` order)."""
        return self.sigmoid(self.partial_logits(matrix, 0) + self.bias)

    def partial_logits(self, columns: np.ndarray, first: int) -> np.ndarray:
        """The logit share of features ``first .. first + columns.shape[1]``: the packer adds
        the base features' share once and the conditional share after every choice."""
        last = first + columns.shape[1]
        scaled = (columns - self.mean[first:last]) / self.scale[first:last]
        return scaled @ self.weights[first:last]

    @staticmethod
    def sigmoid(logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "features": list(self.features),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "weights": [float(v) for v in self.weights],
            "bias": float(self.bias),
            "training": dict(self.training),
        }

    def save(self, path: str | Path) -> None:
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        partial.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        partial.replace(target)

    @classmethod
    def from_dict(cls, data: Any, source: str = "unit scorer") -> UnitScorer:
        def fail(message: str) -> ConfigError:
            return ConfigError(f"{source}: {message}")

        if not isinstance(data, Mapping):
            raise fail(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise fail(f"not a ragtrim unit-scorer file (format {data.get('format')!r})")
        if data.get("version") != VERSION:
            raise fail(f"version {data.get('version')!r} is not supported (expected {VERSION})")
        names = data.get("features")
        if names != list(FEATURES):
            raise fail(
                "fitted on other features than this ragtrim computes "
                f"(file: {names!r}; expected: {list(FEATURES)!r}); refit it with "
                "`ragtrim tune --refit-scorer` or benchmarks/fit_unit_scorer.py"
            )
        arrays = {}
        for key in ("mean", "scale", "weights"):
            arrays[key] = _vector(data.get(key), len(FEATURES), f"{source}: '{key}'")
        if np.any(arrays["scale"] <= 0):
            raise fail("'scale' must be positive")
        bias = data.get("bias")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
            raise fail(f"'bias' must be a finite number, got {bias!r}")
        training = data.get("training", {})
        if not isinstance(training, Mapping):
            raise fail("'training' must be an object")
        return cls(tuple(FEATURES), bias=float(bias), training=dict(training), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> UnitScorer:
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"unit scorer {source}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"unit scorer {source}: not UTF-8 text") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"unit scorer {source}: invalid JSON ({exc})") from None
        return cls.from_dict(data, f"unit scorer {source}")


def _vector(value: Any, length: int, where: str) -> np.ndarray:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != length:
        raise ConfigError(f"{where} must be a list of {length} numbers")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise ConfigError(f"{where} must hold numbers only")
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"{where} must hold finite numbers only")
    return array


def load_scorer(path: str | None = None) -> UnitScorer:
    """The scorer at ``path`` (the shipped one by default), parsed once per version of the
    file (a refit written to the same path is read again)."""
    source = Path(DEFAULT_PATH if path is None else path).resolve()
    try:
        stat = source.stat()
    except OSError as exc:
        raise ConfigError(f"unit scorer {source}: cannot read ({exc.strerror})") from None
    return _parsed(str(source), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _parsed(path: str, mtime_ns: int, size: int) -> UnitScorer:
    return UnitScorer.load(path)
