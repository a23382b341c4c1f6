#!/usr/bin/env bash
# README command 2: set up, then run the test suite (the default run skips tests marked `slow`).
set -uo pipefail
cd "$(dirname "$0")"
bash setup.sh || exit 1
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/python -m pytest "$@"
rc=$?
# pytest exits 5 when it collected no tests: that is a failure here, never a silent pass.
[ "$rc" -eq 5 ] && echo "test.sh: pytest collected no tests" >&2
exit "$rc"
