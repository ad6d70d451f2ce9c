"""The install itself: the torch build in this environment, and what ragtrim's wheel ships.

The torch check is ``.ci/check_torch.py``'s rule, run here on the environment the tests run in,
so a CUDA torch on a machine without a GPU fails the suite as well as the set-up.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CHECK_SCRIPT = ROOT / ".ci" / "check_torch.py"


def _check_torch_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_torch", CHECK_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _setuptools_version() -> Version:
    try:
        return Version(importlib.metadata.version("setuptools"))
    except importlib.metadata.PackageNotFoundError:
        return Version("0")


def _require_torch() -> None:
    # skip only when torch is absent; a torch that is there but fails to import is a failure
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")


def test_installed_torch_is_not_a_cuda_build_without_a_gpu():
    _require_torch()
    import torch

    check = _check_torch_module()
    cuda_dists = check.cuda_distributions()
    has_gpu = check.machine_has_gpu()
    allowed = os.environ.get(check.ALLOW_ENV) == "1"
    reason = check.problem(torch.__version__, torch.version.cuda, cuda_dists, has_gpu, allowed)
    assert reason is None, reason
    if not has_gpu and not allowed:
        assert torch.version.cuda is None and cuda_dists == []


def test_check_script_reports_the_installed_build():
    _require_torch()
    out = subprocess.run(
        [sys.executable, str(CHECK_SCRIPT)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    import torch

    assert out.stdout.strip() == (
        f"setup: torch {torch.__version__} (cuda: {torch.version.cuda or 'none'})"
    )


@pytest.mark.parametrize(
    ("cuda", "dists", "has_gpu", "allowed", "flagged"),
    [
        ("13.0", ["nvidia-cublas", "nvidia-cudnn-cu13"], False, False, True),
        (None, ["nvidia-nccl-cu12"], False, False, True),  # CUDA runtime with a CPU torch
        (None, [], False, False, False),
        ("13.0", ["nvidia-cublas"], True, False, False),
        ("13.0", ["nvidia-cublas"], False, True, False),
    ],
)
def test_check_rule(cuda, dists, has_gpu, allowed, flagged):
    reason = _check_torch_module().problem("2.14.1", cuda, dists, has_gpu, allowed)
    assert (reason is not None) == flagged
    if flagged:
        assert "without a GPU" in reason and "RAGTRIM_ALLOW_CUDA=1" in reason
        assert f"{len(dists)} nvidia/cuda distributions" in reason


def _pip_report(path: Path, packages: list[tuple[str, str]]) -> Path:
    """A report in the shape ``pip install --dry-run --report`` writes (the fields read)."""
    install = [{"metadata": {"name": n, "version": v}, "download_info": {}} for n, v in packages]
    path.write_text(json.dumps({"version": "1", "install": install}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("packages", "refused"),
    [
        ([("torch", "2.14.1"), ("nvidia-cublas", "13.1"), ("cuda-toolkit", "13.0")], True),
        ([("torch", "2.13.0+cpu"), ("sympy", "1.14.0")], False),
        ([("sympy", "1.14.0")], False),  # torch already satisfied
    ],
)
def test_plan_check_refuses_a_cuda_torch_before_install(
    packages, refused, tmp_path, monkeypatch, capsys
):
    check = _check_torch_module()
    monkeypatch.setattr(check, "machine_has_gpu", lambda: False)
    monkeypatch.delenv(check.ALLOW_ENV, raising=False)
    report = _pip_report(tmp_path / "plan.json", packages)
    assert check.check_plan(str(report)) == (1 if refused else 0)
    if refused:
        message = capsys.readouterr().err
        assert "pip would install torch 2.14.1 with 2 nvidia/cuda distributions" in message
        assert "nothing was installed" in message
        monkeypatch.setenv(check.ALLOW_ENV, "1")
        assert check.check_plan(str(report)) == 0


@pytest.mark.slow
def test_built_wheel_counts_tokens_offline(tmp_path):
    """The wheel ships the rank files: unpacked alone, it counts tokens with no network."""
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
    if _setuptools_version() >= Version("77"):  # pyproject's SPDX license string needs 77
        build.append("--no-build-isolation")  # the installed backend will do; no index needed
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "ragtrim", source / "ragtrim", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [*build, "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = wheels.glob("ragtrim-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "unpacked")
    for name in ("o200k_base.tiktoken.gz", "cl100k_base.tiktoken.gz", "LICENSE"):
        assert f"ragtrim/data/tiktoken/{name}" in names
    assert "ragtrim/packing/unit_scorer.json" in names  # the default packer's parameters
    script = textwrap.dedent(
        """
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network disabled in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import ragtrim
        from ragtrim.tokens import TokenCounter, find_rank_file
        print(ragtrim.__file__)
        for name in ("o200k_base", "cl100k_base"):
            print(name, find_rank_file(name).source, TokenCounter(name).count("Offline works."))
        from ragtrim.packing.scorer import load_scorer
        print("scorer", len(load_scorer().features))
        """
    )
    unpacked = tmp_path / "unpacked"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(unpacked),
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-tiktoken-cache"),
    }
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(unpacked))
    assert lines[1:] == [
        "o200k_base ragtrim package 3",
        "cl100k_base ragtrim package 3",
        "scorer 36",
    ]
