#!/usr/bin/env bash
# Set up (see setup.sh), lint and type-check, then run the whole test suite, model and slow
# tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
.venv/bin/ruff check ragtrim tests benchmarks
.venv/bin/ruff format --check ragtrim tests benchmarks
.venv/bin/mypy ragtrim
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -m "" -q "$@"
