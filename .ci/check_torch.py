"""Fail the set-up when the installed torch is a CUDA build on a machine without a GPU.

An unpinned torch (asked for by any dependency) resolves to the CUDA build and several GB of
nvidia-* packages; the set-up pins a CPU build and this check makes a wrong resolution loud.
"""

import importlib.metadata
import os
import shutil
import sys

import torch

version = torch.__version__
cuda_dists = sorted(
    d.metadata["Name"]
    for d in importlib.metadata.distributions()
    if (d.metadata["Name"] or "").lower().startswith(("nvidia-", "cuda-"))
)
has_gpu = shutil.which("nvidia-smi") is not None
if (torch.version.cuda or cuda_dists) and not has_gpu and os.environ.get("RAGTRIM_ALLOW_CUDA") != "1":
    sys.exit(
        f"setup: torch {version} is a CUDA build (cuda {torch.version.cuda}, "
        f"{len(cuda_dists)} nvidia/cuda distributions) on a machine without a GPU; "
        "install a CPU build (pip install torch==<version> from a CPU index or find-links) "
        "or set RAGTRIM_ALLOW_CUDA=1"
    )
print(f"setup: torch {version} (cuda: {torch.version.cuda or 'none'})")
