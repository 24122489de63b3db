#!/usr/bin/env bash
# The slow learning checks (minutes each on 2 cores), with their printed results.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -m slow -s -v tests "$@"
