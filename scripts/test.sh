#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, notebooks and browser test included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
export ICLENS_NOTEBOOK_FAST=1
exec .venv/bin/python -m pytest "$@"
