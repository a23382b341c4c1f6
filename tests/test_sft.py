"""SFT: a smoke run, kill -9 and resume (a test shared by every trainer stage), bad input, data parallel."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from labkit import cli, config, models, runs, sft
from labkit.batches import encode

ROOT = Path(__file__).resolve().parent.parent


def labkit(env: dict, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, **kwargs)


def keys(run: Path) -> list[tuple]:
    return [(r["step"], r["split"], r["metric"]) for r in runs.read_jsonl(run / "metrics.jsonl")]


# --- smoke ----------------------------------------------------------------------------------------------------

def test_smoke_run_writes_metrics_samples_and_checkpoints(tiny_model_dir, smoke_data, tmp_path):
    cfg = config.resolve(sft.SFTConfig, "smoke", {"model.name_or_path": tiny_model_dir, "data_dir": smoke_data,
                                                  "out_dir": str(tmp_path / "run"), "epochs": 2})
    seen = []
    run = sft.train(cfg, callbacks=[seen.append])
    metrics = run.metrics()
    assert metrics and [r for batch in seen for r in batch] == metrics   # callbacks get what is logged
    assert all({"step", "epoch", "tokens", "wall_time", "split", "metric", "value"} <= r.keys() for r in metrics)
    evaluated = {(r["step"], r["split"]) for r in metrics if r["metric"] == "pass@1"}
    assert evaluated == {(s, split) for s in (0, 6, 12)
                         for split in ("train", "atom_base", "test_in_domain", "test_target")}
    losses = [r["value"] for r in metrics if r["metric"] == "train_loss"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert sorted(p.name for p in (run.path / "samples").iterdir()) == [f"step-{s:06d}.jsonl" for s in (0, 6, 12)]
    assert run.checkpoint("last").name == "step-000012" and run.checkpoint("best") is not None
    assert (run.checkpoint("last") / "model.safetensors").exists()
    assert config.load(sft.SFTConfig, run.path / "config.json") == cfg
    # Finished: the same command does no more work and logs nothing twice.
    sft.train(cfg)
    assert keys(run.path) == [(r["step"], r["split"], r["metric"]) for r in metrics]


def test_the_loss_is_on_the_response_tokens_only(tiny_model_dir):
    _, tokenizer = models.load(models.ModelConfig(name_or_path=tiny_model_dir), seed=0)
    ids, labels = encode(tokenizer, "def f(x: int) -> int:\n    \"\"\"Double x.\"\"\"\n", "    return 2 * x\n")
    n_prompt = labels.count(-100)
    assert n_prompt > 0 and labels[:n_prompt] == [-100] * n_prompt and labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[n_prompt:], skip_special_tokens=True) == "    return 2 * x\n"


@pytest.mark.parametrize("plain_head", [True, False], ids=["labelled-positions", "logits-to-keep"])
@pytest.mark.parametrize("completion_only", [True, False])
def test_a_padded_batch_loses_what_its_examples_lose_one_by_one(tiny_llama, completion_only, plain_head,
                                                                monkeypatch):
    """token_losses skips the prompts' output layer (on exactly the labelled positions for a plain head, from the
    first labelled one otherwise) and a right-padded batch's attention mask: none of it may change the loss of
    any example, which is the plain cross-entropy of the whole logits."""
    from labkit import batches
    model, tok = tiny_llama
    if not plain_head:
        monkeypatch.setattr(batches, "PLAIN_HEADS", ())
    examples = [encode(tok, "def f(x):\n" + "    # a longer prompt\n" * i, "    return x" + " + 1" * (3 - i) + "\n")
                for i in range(4)]
    if not completion_only:
        examples = [(ids, list(ids)) for ids, _ in examples]
    alone = [batches.token_losses(model, batches.collate([e], tok.pad_token_id)) for e in examples]
    batch = batches.collate(examples, tok.pad_token_id)
    assert len({len(ids) for ids, _ in examples}) > 1   # padding in the batch
    loss, n = batches.token_losses(model, batch)
    assert n == sum(k for _, k in alone)
    assert loss.item() == pytest.approx(sum(x.item() for x, _ in alone), rel=1e-5)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    whole = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"][:, 1:].flatten(), reduction="sum")
    assert loss.item() == pytest.approx(whole.item(), rel=1e-5)


def test_batches_are_a_function_of_seed_and_epoch_and_group_lengths():
    lengths = [i % 50 + 1 for i in range(200)]
    splits = {"atom_base": list(range(150)), "train_A": list(range(150, 200))}
    weights = {"atom_base": 0.5, "train_A": 2.0}
    a = sft.epoch_batches(splits, weights, 8, lengths, seed=0, epoch=0)
    assert a == sft.epoch_batches(splits, weights, 8, lengths, seed=0, epoch=0)
    assert a != sft.epoch_batches(splits, weights, 8, lengths, seed=0, epoch=1)
    assert len(a) == sft.examples_per_epoch(splits, weights) // 8 == (75 + 100) // 8
    flat = [i for b in a for i in b]
    assert sum(i >= 150 for i in flat) >= 95   # train_A twice (a few may fall in the dropped remainder)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in a) / len(a)
    assert spread < 10   # random batches would spread over ~40 lengths


# --- kill -9 and resume: each trainer stage adds the command of a short run with several checkpoints ---------

KILL_RESUME_RUNS = {
    "sft": lambda model, data: ["sft", "--preset", "smoke", "--model", model, "--data", data,
                                "--set", "epochs=3", "--set", "max_steps=16", "--set", "eval.every=4",
                                "--set", "log_every=1", "--set", "eval.sizes.train=4", "--set", "eval.sizes.atom_base=4",
                                "--set", "eval.sizes.test_in_domain=4", "--set", "eval.sizes.test_target=4"],
    "rl": lambda model, data: ["rl", "--preset", "smoke", "--set", f"model.name_or_path={model}", "--data", data,
                               "--set", "prompts=atom_base,train_A", "--set", "reward=fine", "--set", "steps=8",
                               "--set", "eval.every=2",
                               "--set", "eval.sizes.train=4", "--set", "eval.sizes.atom_base=0",
                               "--set", "eval.sizes.test_in_domain=4", "--set", "eval.sizes.test_target=0"],
}


@pytest.mark.parametrize("stage", list(KILL_RESUME_RUNS))
def test_kill_9_then_the_same_command_resumes_with_each_metric_once(stage, tiny_model_dir, smoke_data, tmp_path,
                                                                   stage_env):
    args = KILL_RESUME_RUNS[stage](tiny_model_dir, smoke_data)

    def start(out: Path) -> subprocess.Popen:
        with open(tmp_path / f"{out.name}.log", "w") as log:   # the child keeps its own copy of the fd
            return subprocess.Popen([sys.executable, "-m", "labkit", *args, "--out", str(out)], cwd=ROOT,
                                    env=stage_env, stdout=subprocess.DEVNULL, stderr=log)

    # The reference (never killed) runs beside the run to be killed: one core each.
    reference, run = start(tmp_path / "reference"), tmp_path / "killed"
    proc = start(run)
    index = run / "checkpoints" / "index.json"
    deadline = time.time() + 120
    while not index.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = json.loads(index.read_text())["last"]
    assert reference.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()[-2000:]
    final = json.loads((tmp_path / "reference" / "checkpoints" / "index.json").read_text())["last"]
    assert killed_at != final, "killed after the last checkpoint: nothing left to resume"

    resumed = labkit(stage_env, *args, "--out", str(run), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got, want = keys(run), keys(tmp_path / "reference")
    assert len(got) == len(set(got)), "a (step, split, metric) was logged twice"
    assert sorted(got) == sorted(want), "metric lines are missing or extra after the resume"
    # The resumed run continues the same random stream and data order: the same numbers as without the kill.
    ref = {(r["step"], r["split"], r["metric"]): r["value"] for r in runs.read_jsonl(tmp_path / "reference" / "metrics.jsonl")}
    for r in runs.read_jsonl(run / "metrics.jsonl"):
        assert r["value"] == pytest.approx(ref[(r["step"], r["split"], r["metric"])], rel=1e-4, abs=1e-6), r
    if stage == "rl":   # one rollout file per step, none lost or left over, the same rows as without the kill
        assert runs.rollout_steps(run) == runs.rollout_steps(tmp_path / "reference") == list(range(1, 9))
        got, want = runs.read_rollouts(run), runs.read_rollouts(tmp_path / "reference")
        assert got.drop(columns="reward").equals(want.drop(columns="reward"))
        assert got.reward.tolist() == pytest.approx(want.reward.tolist(), abs=1e-6)


# --- bad input ------------------------------------------------------------------------------------------------

def test_bad_input_exits_2_with_a_clear_message(tiny_model_dir, smoke_data, tmp_path, capsys):
    base = ["sft", "--preset", "smoke", "--model", tiny_model_dir, "--out", str(tmp_path / "run")]

    def fails(*args, match):
        assert cli.main([*base, *args]) == 2
        err = capsys.readouterr().err
        assert match in err, err

    fails("--data", smoke_data, "--set", "nosuchkey=1", match="unknown config key 'nosuchkey'")
    fails("--data", smoke_data, "--set", 'mixture={"test_target": 1}', match="not a training split")
    fails("--data", str(tmp_path), match="no manifest.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    for p in Path(smoke_data).iterdir():
        (empty / p.name).write_text("" if p.name == "train_A.jsonl" else p.read_text())
    fails("--data", str(empty), match="split 'train_A'")
    fails("--data", smoke_data, "--set", "eval.best_split=train_C", match="eval.best_split")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


# --- data parallel under accelerate --------------------------------------------------------------------------

DP_TOLERANCE = 1e-4   # abs. difference of per-step training losses, 1 process vs 2 (float summation order only)


@pytest.mark.slow   # ~50 s on 2 loaded cores: two process launches plus a one-process reference
def test_accelerate_two_processes_match_one_process(tiny_model_dir, smoke_data, tmp_path, stage_env):
    args = ["sft", "--preset", "smoke", "--model", tiny_model_dir, "--data", smoke_data, "--set", "log_every=1",
            "--set", "eval.sizes={}", "--set", "max_steps=10"]
    one = labkit(stage_env, *args, "--out", str(tmp_path / "one"), timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                          "-m", "labkit", *args, "--out", str(tmp_path / "two")],
                         cwd=ROOT, env=stage_env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]

    def losses(run):
        return {r["step"]: (r["value"], r["tokens"]) for r in runs.read_jsonl(tmp_path / run / "metrics.jsonl")
                if r["metric"] == "train_loss"}

    a, b = losses("one"), losses("two")
    assert sorted(a) == sorted(b) == list(range(1, 11))
    for step in a:
        assert a[step][1] == b[step][1], "both saw the same tokens (same global batches)"
        assert abs(a[step][0] - b[step][0]) < DP_TOLERANCE, (step, a[step], b[step])
