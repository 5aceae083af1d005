#!/usr/bin/env bash
# README command 1 (the main job): set up the environment from scratch if needed, then run the demo.
# Extra arguments go to run_demo.py (e.g. `bash run_scripts/main_job.sh --epochs 10`).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/run_scripts/setup_env.sh"
VENV="${VENV:-$REPO/.venv}"
cd "$REPO"
"$VENV/bin/python" run_scripts/run_demo.py "$@"
echo "report: $REPO/outputs/report.md"
