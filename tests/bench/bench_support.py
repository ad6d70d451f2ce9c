"""Cheap pipelines for benchmark tests: a registered, model-free embedder stage that configs
(dicts and YAML files) can name, so ``run_benchmark``, ``tune_profiles`` and the CLI, which
build their pipeline from a config, never load a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fakes import HashingEmbedder
from pipeline_support import default_config
from pydantic import Field

from ragtrim.stage import Stage, StageConfig

DATA = Path(__file__).resolve().parent / "data"
TINY = DATA / "ragtrim_tiny"


class BenchHashingEmbedder(Stage):
    """Bag-of-words hashing vectors (``tests/fakes.HashingEmbedder``) as an embedder stage."""

    kind = "embedder"

    class Config(StageConfig):
        salt: str = Field("", description="changes the fingerprint, not the vectors")

    dimension = HashingEmbedder.dimension

    @property
    def fingerprint(self) -> str:
        return f"{HashingEmbedder.fingerprint}:{self.config.salt}"

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        return HashingEmbedder().embed(list(texts), kind)


def cheap_config(cache_dir: Path) -> dict[str, Any]:
    """The default pipeline config with the hashing embedder and a private cache folder."""
    config = default_config()
    config["stages"]["embedder"] = {"type": BenchHashingEmbedder.__name__, "init_parameters": {}}
    config["cache"]["directory"] = str(cache_dir)
    return config
