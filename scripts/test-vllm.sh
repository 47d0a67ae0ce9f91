#!/usr/bin/env bash
# Set up .venv-vllm, then run the vLLM agreement test; CULTUREALIGN_REQUIRE_VLLM=1 turns a missing vLLM into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-vllm.sh
CULTUREALIGN_REQUIRE_VLLM=1 .venv-vllm/bin/python -m pytest -q tests/test_vllm.py "$@"
