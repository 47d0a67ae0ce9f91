#!/usr/bin/env bash
# Set everything up, then run the main job on the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/culturealign measure --country CN --prompt persona --no-items
