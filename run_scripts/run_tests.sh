#!/usr/bin/env bash
# README command 2: set up the environment from scratch if needed, then run the test suite.
# Extra arguments go to pytest (e.g. `bash run_scripts/run_tests.sh -k pipeline`). RUN_SLOW=1 adds the slow tests.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/run_scripts/setup_env.sh"
VENV="${VENV:-$REPO/.venv}"
cd "$REPO"
# Lint first (ruff.toml: line length 120, pyflakes, pycodestyle, import order): fails fast on a style error.
"$VENV/bin/ruff" check .
set +e
"$VENV/bin/python" -m pytest tests -q -p no:cacheprovider --durations=10 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
