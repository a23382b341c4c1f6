"""`labkit doctor`: the skip without a GPU, a broken CUDA install, the full-preset plan's command lines, and the
whole --gpu plan run on the CPU (`--device cpu`, smoke presets) as the stand-in for a GPU."""
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from labkit import cli, doctor, runs

ROOT = Path(__file__).resolve().parent.parent
TRAINED = ("pretrain", "sft", "rl", "lora")


def run_doctor(*args, pythonpath=()):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, pythonpath), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "labkit", "doctor", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)


@pytest.mark.slow   # ~45 s: every stage in turn; test_the_full_plan_resolves_for_every_stage checks the plan fast
def test_the_gpu_plan_runs_every_stage_on_the_cpu(tmp_path):
    p = run_doctor("--gpu", "--device", "cpu", "--set", "steps=4", "--set", "keep=true", "--out", tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads((tmp_path / "doctor.json").read_text())
    assert result["status"] == "ok" and result["sandbox"]["status"] == "pass"
    assert result["smoke"]["device"] == "cpu" and result["smoke"]["preset"] == "smoke"
    stages = result["smoke"]["stages"]
    assert sorted(stages) == sorted(["synth", "pretrain", "sft", "rl", "hf_model", "lora"])
    assert all(s["status"] == "ok" and s["returncode"] == 0 for s in stages.values()), stages
    assert {n: stages[n]["steps"] for n in TRAINED} == {"pretrain": 4, "sft": 4, "rl": 2, "lora": 4}
    assert all(stages[n]["tokens_per_s"] > 0 for n in TRAINED)
    assert "rl/reward_mean" in stages["rl"]["final"] and "train/train_loss" in stages["lora"]["final"]
    assert all("model.device=cpu" in stages[n]["command"] for n in TRAINED)
    # Each stage started from the one before; LoRA trained an adapter on the GPT-2 directory written at run time.
    work = tmp_path / "work"
    assert json.loads((work / "rl" / "config.json").read_text())["init"] == str(work / "sft")
    assert json.loads((work / "hf_model" / "config.json").read_text())["model_type"] == "gpt2"
    assert list((work / "lora" / "checkpoints").glob("step-*/adapter_config.json"))
    assert f"{stages['lora']['tokens_per_s']:.0f} tokens/s" in p.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_the_gpu_check_is_skipped(tmp_path):
    p = run_doctor("--gpu", "--out", tmp_path)
    assert p.returncode == 0, p.stderr
    assert "no GPU: skipped" in p.stdout
    result = json.loads((tmp_path / "doctor.json").read_text())
    assert result["status"] == "skipped" and result["cuda"]["available"] is False
    assert sorted(os.listdir(tmp_path)) == ["doctor.json"]
    forced = run_doctor("--gpu", "--device", "cuda", "--out", tmp_path)
    assert forced.returncode == 1 and "no CUDA GPU is visible" in forced.stderr


FAKE_GPU = """
import types
import torch
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
torch.cuda.is_bf16_supported = lambda: True
torch.cuda.get_device_properties = lambda i: types.SimpleNamespace(name="Fake", total_memory=2**34, major=9, minor=0)
"""
RAISING = """
import torch
def broken():
    raise RuntimeError("CUDA driver initialization failed")
torch.cuda.is_available = broken
"""


@pytest.mark.parametrize("patch, says", [
    (RAISING, "torch.cuda.is_available() failed: RuntimeError: CUDA driver initialization failed"),
    (FAKE_GPU, "a matrix product on the GPU failed"),  # the CPU build of torch can't run a CUDA op
], ids=["is_available-raises", "a-cuda-op-fails"])
def test_a_broken_cuda_says_so_exits_1_and_trains_nothing(tmp_path, patch, says):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(patch)  # loaded by every interpreter started with this PYTHONPATH
    out = tmp_path / "out"
    p = run_doctor("--gpu", "--out", out, pythonpath=[site])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "CUDA is broken" in p.stderr and says in p.stderr
    result = json.loads((out / "doctor.json").read_text())
    assert result["status"] == "failed" and says in result["cuda"]["error"] and "smoke" not in result
    assert sorted(os.listdir(out)) == ["doctor.json"]


def test_the_full_plan_resolves_for_every_stage(tmp_path, monkeypatch):
    """The GPU's command lines can't run here: check that every key and value in them is one the stage takes."""
    configs = {}
    for st in doctor.plan(tmp_path, "cuda", "full", "", 10):
        if st.argv[1:3] != ["-m", "labkit"]:
            continue   # hf_model: python -c (run by the CPU test)
        module = importlib.import_module(cli.STAGES[st.argv[3]][0])
        monkeypatch.setattr(module, "run_cli", lambda cfg, args, name=st.name: configs.setdefault(name, cfg) and 0)
        assert cli.main(st.argv[3:]) == 0, st.argv
    assert sorted(configs) == ["lora", "pretrain", "rl", "sft", "synth"]
    assert configs["pretrain"].model.size == "medium" and configs["pretrain"].steps == 10
    assert configs["pretrain"].batch_size == 64 and configs["pretrain"].stdlib_chars == 200_000
    assert configs["sft"].max_steps == 10 and configs["sft"].eval.sizes == {"train": 8, "test_in_domain": 8}
    assert configs["rl"].steps == 5 and configs["rl"].num_generations == 16 and configs["rl"].init == str(tmp_path / "sft")
    assert configs["lora"].model.lora.enabled and configs["lora"].model.lora.target_modules == ["c_attn"]
    assert all(configs[n].model.device == "cuda" for n in TRAINED)


def test_throughput_and_what_counts_as_passed(tmp_path):
    lines = [{"step": s, "split": "train", "metric": "train_loss", "value": 1.0, "tokens": 100 * s,
              "wall_time": 10.0 + s} for s in (1, 2, 3)]
    assert doctor.throughput(lines, ("train", "train_loss")) == 100.0   # step 1's own time left out
    assert doctor.throughput(lines[:1], ("train", "train_loss")) is None
    assert doctor.throughput([{"split": "train", "metric": "tokens_per_s", "value": 5.0, "step": 2}],
                             ("train", "tokens_per_s")) == 5.0
    run = tmp_path / "run"
    runs.write_jsonl(run / "metrics.jsonl", lines)
    st = doctor.Stage("sft", ["true"], run_dir=str(run), steps=3, clock=("train", "train_loss"))
    log = tmp_path / "log"
    log.write_text("the stage's output\n")
    assert doctor.summarise(st, 0, 1.0, log, killed=False)["status"] == "ok"
    short = doctor.summarise(doctor.Stage("sft", ["true"], run_dir=str(run), steps=5), 0, 1.0, log, False)
    assert short["status"] == "failed" and "step 3 of 5" in short["why"] and "output" in short["log_tail"]
    runs.write_jsonl(run / "metrics.jsonl", lines + [{**lines[-1], "value": float("nan")}])
    assert "not finite" in doctor.summarise(st, 0, 1.0, log, False)["why"]
    assert doctor.summarise(st, 0, 1.0, log, killed=True)["status"] == "timeout"


def test_the_budget_kills_a_stage_and_what_needs_a_failed_stage_is_not_run(tmp_path):
    py = [sys.executable, "-c"]
    # An unusual duration, so that no other process on the machine matches it below.
    stages = [doctor.Stage("slow", py + ["import subprocess; subprocess.run(['sleep', '59.871'])"]),
              doctor.Stage("after_slow", py + ["pass"], needs=("slow",)),
              doctor.Stage("bad", py + ["print('what went wrong'); raise SystemExit(3)"], accelerator=False),
              doctor.Stage("after_bad", py + ["pass"], needs=("bad",), accelerator=False)]
    t0 = time.monotonic()
    results = doctor.run_stages(stages, tmp_path, budget_s=2.0, exclusive=True)
    assert time.monotonic() - t0 < 10
    assert results["slow"]["status"] == "timeout" and results["after_slow"]["status"] == "not_run"
    assert results["bad"]["status"] == "failed" and "what went wrong" in results["bad"]["log_tail"]
    assert results["after_bad"]["status"] == "not_run" and "bad" in results["after_bad"]["why"]
    sleepers = subprocess.run(["pgrep", "-f", "sleep 59.871"], capture_output=True, text=True).stdout.split()
    assert not sleepers  # the stage's child went with it (its whole session was killed)
