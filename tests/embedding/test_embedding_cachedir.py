from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

import ragtrim
from ragtrim.cachedir import default_cache_dir
from ragtrim.errors import ConfigError


def test_env_variable_wins(tmp_cache_dir: Path) -> None:
    assert default_cache_dir() == tmp_cache_dir


def test_user_cache_dir_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGTRIM_CACHE_DIR", raising=False)
    assert default_cache_dir() == Path(platformdirs.user_cache_dir("ragtrim"))
    monkeypatch.setenv("RAGTRIM_CACHE_DIR", "  ")
    assert default_cache_dir() == Path(platformdirs.user_cache_dir("ragtrim"))


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAGTRIM_CACHE_DIR", "~/rt-cache")
    assert default_cache_dir() == tmp_path / "rt-cache"


def test_never_inside_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    package = Path(ragtrim.__file__).parent
    monkeypatch.setenv("RAGTRIM_CACHE_DIR", str(package / "cache"))
    with pytest.raises(ConfigError, match="inside the installed ragtrim package"):
        default_cache_dir()
