#!/usr/bin/env bash
# Set up (if needed) and run the main job: induction / n-gram head scan of the embedded
# default model (Gemma 3 270M), writing out/induction/report.html and result.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/iclens probe induction --model gemma-3-270m --out out/induction "$@"
