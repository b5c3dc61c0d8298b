#!/usr/bin/env bash
# Set up (if needed), run the lint and type gate (ruff, mypy; configured in pyproject.toml), then the whole
# test suite. Any of the three failing fails the script; pytest's exit code 5 ("no tests collected") is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
.venv/bin/ruff check stseval tests benchmarks scripts || { echo "scripts/test.sh: ruff check failed" >&2; exit 1; }
.venv/bin/mypy || { echo "scripts/test.sh: mypy failed" >&2; exit 1; }
.venv/bin/python -m pytest -q "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "scripts/test.sh: pytest collected no tests; treating as a failure" >&2
    exit 1
fi
exit "$status"
