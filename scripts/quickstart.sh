#!/usr/bin/env bash
# Set everything up, then run the main job on the default model: an alignment to China with align's defaults (up to 40 Adam steps, stopping when validation stalls) and the comparison table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# --force: this demo folder is rewritten on every run of the quickstart (align never overwrites without it)
.venv/bin/culturealign align --country CN --out runs/quickstart-cn --force
.venv/bin/culturealign compare runs/quickstart-cn
