"""Session-wide fixtures: tiny locally built models and an isolated cache directory.

Model builders import torch lazily, so test modules that do not use these fixtures do not pay
for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_embedder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("models") / "tiny-embedder")


@pytest.fixture(scope="session")
def tiny_cross_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-cross-encoder")


@pytest.fixture(autouse=True)
def _private_default_cache_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test writes the user's cache: ``Pipeline.load`` takes no cache location from an
    index, so loads without a config use the default cache directory."""
    monkeypatch.setenv("RAGTRIM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "default-cache"))


@pytest.fixture
def tmp_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``RAGTRIM_CACHE_DIR`` at a fresh directory for one test."""
    directory = tmp_path / "ragtrim-cache"
    monkeypatch.setenv("RAGTRIM_CACHE_DIR", str(directory))
    return directory
