#!/usr/bin/env bash
# The one-command GPU check (see benchmarks/gpu_check.py): bash benchmarks/gpu_check.sh [--dry-run] OUTDIR
# Runs from the repository root with the project's virtual environment when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
exec "$python" benchmarks/gpu_check.py "$@"
