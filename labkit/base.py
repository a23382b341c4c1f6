"""The committed base model: where it lives, how it was made, and whether a rebuild gives the same bits.

The lab's base model is pretrained by the lab itself (`labkit pretrain`) and committed in `labkit/base_model/`,
so no notebook, test or experiment has to pretrain before it can fine-tune: `model.name_or_path="base"` loads
it. Beside the weights and tokenizer the folder holds what is needed to trust and remake it:

    SHA256SUMS           digests of the model files
    README.md            the command that rebuilds it, its training time and final metrics
    metrics.jsonl        the pretraining curves (notebook 03 draws them)
    pretrain_config.json the resolved PretrainConfig of the run

    python -m labkit pretrain --preset embedded --out runs/base --verify    # rebuild, compare the digests

Pretraining on the CPU is deterministic for a given seed, torch build and thread count (the README names the
thread count used); `--verify` says whether the rebuild matched, file by file. `--publish` (maintainers)
replaces the committed folder with a finished run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from labkit import runs
from labkit.files import write_atomic

BASE_DIR = Path(__file__).parent / "base_model"
# The files whose bytes define the model; generation_config.json and the like are derived.
DIGESTED = ("model.safetensors", "config.json", "tokenizer.json")
COMMAND = "OMP_NUM_THREADS={threads} python -m labkit pretrain --preset embedded --out runs/base --verify"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digests(model_dir: Path) -> dict[str, str]:
    return {name: sha256(Path(model_dir) / name) for name in DIGESTED}


def committed_digests(dest: Path = BASE_DIR) -> dict[str, str]:
    """The digests in dest/SHA256SUMS (`sha256sum` format)."""
    lines = (Path(dest) / "SHA256SUMS").read_text().splitlines()
    return {name.strip(): digest for digest, name in (line.split(maxsplit=1) for line in lines if line.strip())}


def verify(model_dir: Path, dest: Path = BASE_DIR) -> dict[str, bool]:
    """{file: whether its sha256 equals the committed one} for a rebuilt model directory."""
    want, have = committed_digests(dest), digests(model_dir)
    return {name: have[name] == want.get(name) for name in DIGESTED}


def publish(run_dir: Path, threads: int, dest: Path = BASE_DIR) -> Path:
    """Replace `dest` with the final model of a finished pretraining run, its curves, config and digests;
    `threads`: the torch threads it trained with (the rebuild needs the same)."""
    run_dir, dest = Path(run_dir), Path(dest)
    model_dir = run_dir / "model"
    if not (model_dir / "model.safetensors").exists():
        raise FileNotFoundError(f"{model_dir} holds no final model; finish the pretraining run first")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    shutil.copy(run_dir / "metrics.jsonl", tmp / "metrics.jsonl")
    shutil.copy(run_dir / "config.json", tmp / "pretrain_config.json")
    sums = digests(tmp)
    write_atomic(tmp / "SHA256SUMS", "".join(f"{d}  {name}\n" for name, d in sums.items()))
    write_atomic(tmp / "README.md", readme(run_dir, sums, threads))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def readme(run_dir: Path, sums: dict[str, str], threads: int) -> str:
    rows = runs.read_jsonl(run_dir / "metrics.jsonl")
    cfg = json.loads((run_dir / "config.json").read_text())
    last = {}
    for r in rows:
        last[(r["split"], r["metric"])] = r["value"]
    wall = max(r.get("wall_time", 0.0) for r in rows)
    digest_lines = "\n".join(f"    {d}  {name}" for name, d in sums.items())
    return f"""# The lab's committed base model

Made by the lab's own pretraining (nothing downloaded); loaded with `model.name_or_path="base"`.

Rebuild it and compare the digests (a CPU run; same torch build and thread count give the same bits):

    {COMMAND.format(threads=threads)}

- preset `embedded`: {cfg["model"]["size"]} Llama, {cfg["steps"]} steps of {cfg["batch_size"]} x {cfg["seq_len"]} tokens,
  seed {cfg["seed"]}, phrase-first atom documents: {cfg.get("phrase_first", False)}
- training time: {wall:.0f} s on {threads} CPU thread(s)
- final held-out loss {last[("heldout", "loss")]:.3f}, atomic loss {last[("atomic", "loss")]:.3f}

SHA256SUMS:

{digest_lines}

`metrics.jsonl` holds the pretraining curves and `pretrain_config.json` the resolved config.
"""
