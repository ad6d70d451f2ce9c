#!/usr/bin/env bash
# Create .venv and install ragtrim with every extra the demo and the tests use.
# torch: sentence-transformers needs it, and an unpinned torch resolves to the CUDA build
# (several GB). The set-up asks pip for one pinned release first; where a CPU build of that
# release is on pip's find-links (as on the project's machines) pip takes it and resolves its
# dependencies from the index. .ci/check_torch.py reads pip's plan (a dry run) before torch is
# installed, then the installed build, and stops the set-up if it is a CUDA build (or brings
# nvidia-*/cuda-* packages) on a machine without a GPU, unless RAGTRIM_ALLOW_CUDA=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
TORCH_VERSION=${RAGTRIM_TORCH_VERSION:-2.13.0}
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q --dry-run --report .venv/torch-plan.json "torch==${TORCH_VERSION}"
  python .ci/check_torch.py --plan .venv/torch-plan.json
  python -m pip install -q "torch==${TORCH_VERSION}"
fi
python .ci/check_torch.py
python -m pip install -q -e ".[torch,offline,plot,dev,langchain,llamaindex,haystack]"
python .ci/check_torch.py
echo "setup: ragtrim installed in .venv"
