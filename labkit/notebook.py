"""What the training notebooks (04 SFT, 05 RL) do before they train: find, or make, their data and base model.

In the sequence (by hand or under `regress`) a notebook writing into OUT finds notebook 02's data in
OUT/../02/data and notebook 03's base model in OUT/../03/pretrain/model, unless its `data_dir`/`base_model`
parameters name others. Opened on its own it makes what it lacks: the data synthesised at its preset into
OUT/data, and a base model that is the random tiny embedded one at `smoke` (plumbing only) or pretrained at
its preset into OUT/pretrain. Nothing here draws (figures: labkit.viz).
"""
from __future__ import annotations

import json
from pathlib import Path

from labkit import cli, config


def setup_data_and_base(out, preset: str, data_dir: str = "", base_model: str = "") -> tuple[Path, dict]:
    """(the data directory, the `model.*` overrides naming the base model) for a notebook writing into `out`."""
    out = Path(out)
    data = Path(data_dir or out.parent / "02" / "data")
    if not (data / "manifest.json").exists():
        data = out / "data"
        if cli.main(["synth", "--preset", preset, "--out", str(data)]) != 0:
            raise RuntimeError(f"synthesising the data into {data} failed (its error is printed above)")
    print("data:", data, json.loads((data / "manifest.json").read_text())["counts"])

    base = Path(base_model or out.parent / "03" / "pretrain" / "model")
    if (base / "config.json").exists():
        model = {"model.name_or_path": str(base)}
    elif preset == "smoke":
        model = {"model.name_or_path": "embedded", "model.size": "tiny"}
    else:
        from labkit import pretrain   # torch: only when a base model has to be trained here

        pre = config.resolve(pretrain.PretrainConfig, preset, {"out_dir": str(out / "pretrain")})
        model = {"model.name_or_path": str(pretrain.train(pre))}
    print("base model:", model)
    return data, model
