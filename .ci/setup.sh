#!/usr/bin/env bash
# Create .venv and install ragtrim with every extra the demo and the tests use.
# torch: sentence-transformers needs it, and an unpinned torch resolves to the CUDA build
# (several GB). Where a CPU build of torch is available locally (pip's find-links, as on the
# project's machines), it is installed first and satisfies that requirement; elsewhere pip
# resolves torch as usual (set PIP_INDEX_URL/PIP_EXTRA_INDEX_URL to a CPU index to avoid CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
TORCH_VERSION=${RAGTRIM_TORCH_VERSION:-2.13.0}
if python -c "import torch" 2>/dev/null; then
  echo "setup: torch $(python -c 'import torch; print(torch.__version__)') already installed"
elif python -m pip install -q --no-index "torch==${TORCH_VERSION}" 2>/dev/null; then
  echo "setup: installed the local CPU build of torch ${TORCH_VERSION}"
else
  echo "setup: no local CPU build of torch ${TORCH_VERSION}; pip resolves torch from the index"
fi
python -m pip install -q -e ".[offline,plot,dev,langchain,llamaindex,haystack]"
echo "setup: ragtrim installed in .venv"
