#!/usr/bin/env bash
# A GPU machine's first check: is CUDA sound, is bf16 there, does every stage train at its full preset (and LoRA
# on a local Hugging Face model), and at what throughput? `python -m labkit doctor --gpu`, under five minutes;
# the result is OUT/doctor.json. Exit 0: passed, or no GPU (skipped); 1: a check failed.
#   bash bench/gpu_check.sh [OUT] [more doctor flags, e.g. --set steps=20]   (OUT defaults to runs/doctor)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=python3
out=${1:-runs/doctor}
[ $# -gt 0 ] && shift
exec "$py" -m labkit doctor --gpu --out "$out" "$@"
