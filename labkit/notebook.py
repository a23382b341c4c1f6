"""What the notebooks share: how 04 (SFT) and 05 (RL) find, or make, their data and base model, which SFT run
05's RL starts from, and which of the sequence's models notebook 08 compares.

In the sequence (by hand or under `regress`) a notebook writing into OUT finds notebook 02's data in
OUT/../02/data, unless its `data_dir` parameter names another; opened on its own it synthesises the data at its
preset into OUT/data. The base model is the one its `base_model` parameter names, else the one notebook 03
retrained into OUT/../03/pretrain/model if it did, else the committed base ("base", `labkit/base_model/`); at
`smoke` (plumbing only) it is the random tiny embedded model. RL after SFT (05) starts from 04's "atomic +
synthetic" run when that run has the settings 05 asks for (the same seed makes it the same run), else from an
SFT run 05 trains itself. Nothing here draws (figures: labkit.viz).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from labkit import cli, config, sft, tasks

F1_RUN = Path("04") / "runs" / "atomic-synthetic"    # notebook 04's "atomic + synthetic" run, under the sequence


def f1_mixtures(preset: str, composites: str) -> dict[str, dict]:
    """Notebook 04's SFT mixtures by name (05's SFT start is the last). At smoke the data hold 16 composites:
    half of them (train_B), so that RL after SFT keeps fresh prompts."""
    composites = "train_B" if preset == "smoke" else composites
    return {"atomic only": tasks.ATOMIC, "synthetic only": {composites: 1},
            "atomic + synthetic": {**tasks.ATOMIC, composites: 1}}


def setup_data_and_base(out, preset: str, data_dir: str = "", base_model: str = "") -> tuple[Path, dict]:
    """(the data directory, the `model.*` overrides naming the base model) for a notebook writing into `out`."""
    out = Path(out)
    data = Path(data_dir or out.parent / "02" / "data")
    if not (data / "manifest.json").exists():
        data = out / "data"
        if cli.main(["synth", "--preset", preset, "--out", str(data)]) != 0:
            raise RuntimeError(f"synthesising the data into {data} failed (its error is printed above)")
    print("data:", data, json.loads((data / "manifest.json").read_text())["counts"])

    if base_model:
        model = {"model.name_or_path": base_model}
    elif retrained_base(out.parent):
        model = {"model.name_or_path": retrained_base(out.parent)}
    elif preset == "smoke":
        model = {"model.name_or_path": "embedded", "model.size": "tiny"}
    else:
        model = {"model.name_or_path": "base"}
    print("base model:", model)
    return data, model


def retrained_base(work) -> str:
    """Notebook 03's retrained base model in the sequence under WORK, if it retrained one; else ""."""
    path = Path(work) / "03" / "pretrain" / "model"
    return str(path) if (path / "config.json").exists() else ""


def sft_start(out, preset: str, overrides: dict, callbacks=()) -> Path:
    """The SFT run notebook 05's RL starts from (see the module docstring): 04's run if it has the same settings
    (resumed there if it was cut short), else one trained (or resumed) into OUT/sft."""
    cfg = config.resolve(sft.SFTConfig, preset, {**overrides, "out_dir": str(Path(out) / "sft")})
    theirs = Path(out).parent / F1_RUN
    if (theirs / "config.json").exists():
        their = json.loads((theirs / "config.json").read_text())
        where = Path(their["out_dir"]).resolve() == theirs.resolve()   # it was trained there, not moved
        if where and {**their, "out_dir": ""} == {**config.to_dict(cfg), "out_dir": ""}:
            print(f"SFT start: notebook 04's run {theirs} (the same settings; finished, it returns at once)")
            cfg = dataclasses.replace(cfg, out_dir=their["out_dir"])
    return sft.train(cfg, callbacks=list(callbacks)).path


def sequence_models(work) -> dict[str, str]:
    """Notebook 08's models in the sequence under WORK: the base (03's retrain, else the committed one) and the
    runs of notebook 05 that exist: RL after SFT, the SFT run it started from, and RL from the base."""
    out = {"base": retrained_base(work) or "base"}
    rl_runs = {"rl after sft": Path(work) / "05/rl/after-sft", "rl from base": Path(work) / "05/rl/from-base"}
    after = rl_runs["rl after sft"] / "config.json"
    if after.exists():
        out["sft"] = json.loads(after.read_text())["init"]
    for label, path in rl_runs.items():
        if (path / "checkpoints" / "index.json").exists():
            out[label] = str(path)
    return out


def sequence_against(chosen: dict[str, str]) -> dict[str, str]:
    """RL after SFT is measured against the SFT checkpoint it started from, when both are among the models."""
    return {"rl after sft": "sft"} if {"rl after sft", "sft"} <= set(chosen) else {}
