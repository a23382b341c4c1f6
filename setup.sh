#!/usr/bin/env bash
# Sets the lab up on a fresh machine, from project files only: a virtual environment in .venv with the
# pinned packages of requirements.txt, and labkit itself (editable). Safe to run again: it only adds.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
# The notebooks' kernel must be this venv's interpreter (papermill and JupyterLab look for "python3").
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
# Debian's chromium: kaleido draws PNG figures with it and the browser test drives it (Playwright, no download).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt-get update -q && apt-get install -y -q chromium >/dev/null
  else sudo apt-get update -q && sudo apt-get install -y -q chromium >/dev/null; fi
fi
