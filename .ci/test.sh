#!/usr/bin/env bash
# Set up (see setup.sh), then run the whole test suite, model and slow tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -m "" -q "$@"
