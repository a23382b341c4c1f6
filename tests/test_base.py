"""The committed base model: it is what "base" loads, its files are the ones its digests name, it is a trained
model, and publish/verify round-trip a pretraining run."""
import json
import shutil

import pytest
from labkit import atomic, base, cli, config, evaluate, models, pretrain, runs, tasks
from labkit.config import UserError


def test_the_committed_files_have_the_committed_digests():
    assert base.verify(base.BASE_DIR) == {name: True for name in base.DIGESTED}
    readme = (base.BASE_DIR / "README.md").read_text()
    assert "--preset embedded" in readme and all(d in readme for d in base.committed_digests().values())
    saved = json.loads((base.BASE_DIR / "pretrain_config.json").read_text())
    recipe = config.resolve(pretrain.PretrainConfig, "embedded", {"out_dir": saved["out_dir"]})
    assert saved == json.loads(json.dumps(config.to_dict(recipe))), "the embedded preset is not the committed recipe"


def test_base_loads_the_committed_model_and_it_is_trained():
    model, tokenizer = models.load(models.ModelConfig(name_or_path="base", device="cpu"), seed=0)
    assert model.config.hidden_size == models.SIZES["small"]["hidden_size"]
    # one phrasing of 40 atomic functions, greedy: a random model passes none
    atom_tasks = [t for t in tasks.atom_base(atomic.library()) if t.id.endswith("/0")][:40]
    result = evaluate.evaluate_tasks(model, tokenizer, atom_tasks, n=1, k=[1], temperature=1.0, top_p=1.0,
                                     max_new_tokens=64, greedy=True, seed=0)
    assert result.metrics["pass@1"] >= 0.2


def test_stage_configs_start_from_the_committed_base():
    from labkit.rl import RLConfig
    from labkit.sft import SFTConfig
    assert SFTConfig().model.name_or_path == RLConfig().model.name_or_path == "base"
    assert evaluate.EvalConfig().model.name_or_path == "base"
    assert pretrain.PretrainConfig().model.name_or_path == "embedded"   # pretraining starts from random weights


def test_a_missing_committed_base_says_how_to_rebuild_it(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "BASE_DIR", tmp_path / "base_model")
    with pytest.raises(UserError, match="--preset embedded"):
        models.load(models.ModelConfig(name_or_path="base"))


def _run_dir(tmp_path, tiny_model_dir):
    """A finished pretraining run directory around the tiny model."""
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "model")
    config.save(config.resolve(pretrain.PretrainConfig, "smoke", {"out_dir": str(run)}), run / "config.json")
    runs.write_jsonl(run / "metrics.jsonl", [
        {"step": 10, "split": "heldout", "metric": "loss", "value": 3.5, "wall_time": 12.0},
        {"step": 10, "split": "atomic", "metric": "loss", "value": 1.5, "wall_time": 12.0}])
    return run


def test_publish_then_verify_round_trips(tmp_path, tiny_model_dir):
    run, dest = _run_dir(tmp_path, tiny_model_dir), tmp_path / "committed"
    base.publish(run, threads=2, dest=dest)
    assert base.verify(run / "model", dest) == {name: True for name in base.DIGESTED}
    assert "OMP_NUM_THREADS=2" in (dest / "README.md").read_text()
    model, _ = models.load(models.ModelConfig(name_or_path=str(dest), device="cpu"))
    model.model.embed_tokens.weight.data += 1.0   # another model: its weights' digest differs
    model.save_pretrained(run / "model")
    assert base.verify(run / "model", dest)["model.safetensors"] is False


def test_pretrain_verify_exits_1_when_the_rebuild_differs(tmp_path, capsys):
    tiny = {"model.size": "tiny", "model.device": "cpu", "steps": 2, "batch_size": 2, "seq_len": 32, "warmup": 1,
            "log_every": 1, "eval_every": 2, "eval_blocks": 1, "save_every": 2, "stdlib_chars": 20_000,
            "atomic_repeat": 1}
    args = ["pretrain", "--out", str(tmp_path), "--verify"] + [a for k, v in tiny.items() for a in ("--set", f"{k}={v}")]
    assert cli.main(args) == 1
    assert "DIFFERS from the committed base" in capsys.readouterr().out
