#!/usr/bin/env bash
# README command 1: set up, then run the main job on the embedded default, headless, on the CPU:
# every notebook in order at the quick preset (regress), its report, and the figures of its runs.
set -euo pipefail
cd "$(dirname "$0")"
start=$(date +%s)
bash setup.sh
export OMP_WAIT_POLICY=PASSIVE
py=.venv/bin/python
work=runs/regress/quick
echo "== set-up done in $(( $(date +%s) - start )) s; running the notebook sequence at the quick preset"
status=0
$py -m labkit regress --preset quick --out runs/regress || status=$?
echo "== figures of every run -> figures/quick/"
mkdir -p figures/quick
[ -d "$work/figures" ] && cp -r "$work"/figures/. figures/quick/
echo "== main job finished in $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s (exit $status)"
echo "   report:  $work/report.html"
echo "   figures: figures/quick/"
echo "   explore: .venv/bin/jupyter lab $work   (the executed notebooks, outputs included, in $work/NN/)"
echo "            or .venv/bin/jupyter lab notebooks/ and set work_dir = \"../$work\" in 06_dashboard's"
echo "            parameters cell to look at these runs in the dashboard"
exit $status
