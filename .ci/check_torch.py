"""Fail the set-up when the installed torch is a CUDA build on a machine without a GPU.

An unpinned torch (asked for by any dependency) resolves to the CUDA build and several GB of
nvidia-*/cuda-* packages; the set-up pins a CPU build and this check makes a wrong resolution
loud. tests/test_install.py runs the same rule against the test environment.
RAGTRIM_ALLOW_CUDA=1 accepts a CUDA build anyway.
"""

from __future__ import annotations

import importlib.metadata
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
    version: str, cuda: str | None, cuda_dists: list[str], has_gpu: bool, allowed: bool
) -> str | None:
    """Why this torch is wrong for this machine, or None when it is fine."""
    if not (cuda or cuda_dists) or has_gpu or allowed:
        return None
    shown = ", ".join(cuda_dists[:3]) + (", ..." if len(cuda_dists) > 3 else "")
    build = f"a CUDA build (cuda {cuda})" if cuda else "a CPU build"
    dists = f"{len(cuda_dists)} nvidia/cuda distributions" + (f" ({shown})" if shown else "")
    return (
        f"torch {version} is {build}, with {dists} installed, on a machine without a GPU. "
        "Remove .venv and run the set-up again where pip can find a CPU build of torch "
        "(a wheel on its find-links, or PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu), "
        f"or set {ALLOW_ENV}=1 to keep the CUDA build"
    )


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
    sys.exit(main())
