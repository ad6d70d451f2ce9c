"""Fail the set-up when torch is (or would be) a CUDA build on a machine without a GPU.

An unpinned torch (asked for by any dependency) resolves to the CUDA build and several GB of
nvidia-*/cuda-* packages; the set-up pins a CPU build and this check makes a wrong resolution
loud. ``--plan REPORT`` reads what pip would install (``pip install --dry-run --report``), so a
CUDA build is refused before it is installed; without it, the installed torch is read.
tests/test_install.py runs the same rule against the test environment.
RAGTRIM_ALLOW_CUDA=1 accepts a CUDA build anyway.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
from pathlib import Path

ALLOW_ENV = "RAGTRIM_ALLOW_CUDA"


def cuda_distributions() -> list[str]:
    """Installed nvidia-*/cuda-* distributions (the CUDA runtime a CUDA torch pulls in)."""
    return sorted(
        {
            d.metadata["Name"]
            for d in importlib.metadata.distributions()
            if (d.metadata["Name"] or "").lower().startswith(("nvidia-", "cuda-"))
        }
    )


def machine_has_gpu() -> bool:
    """An NVIDIA driver is present (its tool on PATH, or the kernel module loaded)."""
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/version").exists()


def problem(
    version: str,
    cuda: str | None,
    cuda_dists: list[str],
    has_gpu: bool,
    allowed: bool,
    planned: bool = False,
) -> str | None:
    """Why this torch is wrong for this machine, or None when it is fine.

    ``planned``: the figures are what pip would install, and nothing is installed yet.
    """
    if not (cuda or cuda_dists) or has_gpu or allowed:
        return None
    shown = ", ".join(cuda_dists[:3]) + (", ..." if len(cuda_dists) > 3 else "")
    dists = f"{len(cuda_dists)} nvidia/cuda distributions" + (f" ({shown})" if shown else "")
    cpu_build = (
        "a CPU build of torch (a wheel on its find-links, or "
        "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu)"
    )
    if planned:
        return (
            f"pip would install torch {version} with {dists} on a machine without a GPU; "
            f"nothing was installed. Run the set-up again where pip can find {cpu_build}, "
            f"or set {ALLOW_ENV}=1 to install the CUDA build"
        )
    build = f"a CUDA build (cuda {cuda})" if cuda else "a CPU build"
    return (
        f"torch {version} is {build}, with {dists} installed, on a machine without a GPU. "
        f"Remove .venv and run the set-up again where pip can find {cpu_build}, "
        f"or set {ALLOW_ENV}=1 to keep the CUDA build"
    )


def check_plan(report_path: str) -> int:
    """Check pip's dry-run report for the torch install before anything is downloaded."""
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    names = {item["metadata"]["name"]: item["metadata"]["version"] for item in report["install"]}
    torch_version = next((v for n, v in names.items() if n.lower() == "torch"), None)
    if torch_version is None:
        print("setup: pip's plan installs no torch (already satisfied)")
        return 0
    planned_dists = sorted(n for n in names if n.lower().startswith(("nvidia-", "cuda-")))
    reason = problem(
        torch_version,
        None,
        planned_dists,
        machine_has_gpu(),
        os.environ.get(ALLOW_ENV) == "1",
        planned=True,
    )
    if reason:
        print(f"setup: {reason}", file=sys.stderr)
        return 1
    print(f"setup: pip will install torch {torch_version} ({len(planned_dists)} nvidia/cuda)")
    return 0


def main() -> int:
    try:
        import torch
    except ImportError as exc:
        print(f"setup: torch is not importable: {exc}", file=sys.stderr)
        return 1
    version = str(torch.__version__)
    cuda = torch.version.cuda
    reason = problem(
        version, cuda, cuda_distributions(), machine_has_gpu(), os.environ.get(ALLOW_ENV) == "1"
    )
    if reason:
        print(f"setup: {reason}", file=sys.stderr)
        return 1
    print(f"setup: torch {version} (cuda: {cuda or 'none'})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--plan":
        sys.exit(check_plan(sys.argv[2]))
    if len(sys.argv) != 1:
        sys.exit("usage: check_torch.py [--plan PIP_REPORT.json]")
    sys.exit(main())
