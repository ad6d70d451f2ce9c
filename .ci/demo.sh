#!/usr/bin/env bash
# Set up (see setup.sh), then run the tokens-vs-quality benchmark on the bundled corpus:
# prints the table, writes benchmarks/results/kestrel/{results.md,results.json,tokens_vs_quality.png}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
HF_HUB_OFFLINE=1 .venv/bin/ragtrim bench --dataset corpora/kestrel --sweep benchmarks/configs/sweep.yaml --half test --out benchmarks/results/kestrel "$@"
