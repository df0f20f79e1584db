#!/usr/bin/env bash
# Set up .venv and run every check: ruff, mypy, the JavaScript tests and pytest.
#
#   bash scripts/test.sh            # the default run (a few minutes on 2 cores)
#   bash scripts/test.sh -m slow    # extra pytest arguments are passed through
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
VENV=${VENV:-.venv}
echo "== ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "== mypy"
"$VENV/bin/mypy"
if compgen -G "tests/js/*.test.mjs" >/dev/null; then
    echo "== node --test"
    node --test tests/js/
fi
echo "== pytest"
# One compute thread in the tests and every process they start: the same mattes in each (the
# thread count changes the order of float sums), and a busy 2-core machine not oversubscribed.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest: no tests collected"
    rc=0
fi
exit "$rc"
