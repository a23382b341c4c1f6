#!/usr/bin/env bash
# README command 2: set up, then run the test suite (the default run skips tests marked `slow`).
set -uo pipefail
cd "$(dirname "$0")"
bash setup.sh || exit 1
export OMP_WAIT_POLICY=PASSIVE
# Two workers (pytest-xdist), one torch thread each, so that the short tests run beside the longest one (the smoke
# sequence), which starts first (tests/conftest.py). Timings: README, *The two commands*.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
.venv/bin/python -m pytest -n 2 "$@"
rc=$?
# pytest exits 5 when it collected no tests: that is a failure here, never a silent pass.
[ "$rc" -eq 5 ] && echo "test.sh: pytest collected no tests" >&2
exit "$rc"
