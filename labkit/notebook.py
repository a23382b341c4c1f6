"""What the training notebooks (04 SFT, 05 RL) do before they train: find, or make, their data and base model.

In the sequence (by hand or under `regress`) a notebook writing into OUT finds notebook 02's data in
OUT/../02/data, unless its `data_dir` parameter names another; opened on its own it synthesises the data at its
preset into OUT/data. The base model is the one its `base_model` parameter names, else the one notebook 03
retrained into OUT/../03/pretrain/model if it did, else the committed base ("base", `labkit/base_model/`); at
`smoke` (plumbing only) it is the random tiny embedded model. Nothing here draws (figures: labkit.viz).
"""
from __future__ import annotations

import json
from pathlib import Path

from labkit import cli


def setup_data_and_base(out, preset: str, data_dir: str = "", base_model: str = "") -> tuple[Path, dict]:
    """(the data directory, the `model.*` overrides naming the base model) for a notebook writing into `out`."""
    out = Path(out)
    data = Path(data_dir or out.parent / "02" / "data")
    if not (data / "manifest.json").exists():
        data = out / "data"
        if cli.main(["synth", "--preset", preset, "--out", str(data)]) != 0:
            raise RuntimeError(f"synthesising the data into {data} failed (its error is printed above)")
    print("data:", data, json.loads((data / "manifest.json").read_text())["counts"])

    retrained = out.parent / "03" / "pretrain" / "model"
    if base_model:
        model = {"model.name_or_path": base_model}
    elif (retrained / "config.json").exists():
        model = {"model.name_or_path": str(retrained)}
    elif preset == "smoke":
        model = {"model.name_or_path": "embedded", "model.size": "tiny"}
    else:
        model = {"model.name_or_path": "base"}
    print("base model:", model)
    return data, model
