#!/usr/bin/env bash
# README command 1: set up, then run the main job on the embedded default, headless, on the CPU.
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
export OMP_WAIT_POLICY=PASSIVE
py=.venv/bin/python
echo "== 1/1 atomic library check"
$py -m labkit atomic --check
