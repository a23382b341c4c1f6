"""The findings suite: the verdict rules on made-up numbers (each verdict can come out either way), the runner's
skip-if-complete and dependency handling, and the smoke suite end to end (slow)."""
import dataclasses
import json
from pathlib import Path

import pytest

from labkit import config, experiments, runs
from labkit.rl import FILTER_FILE
from labkit.verdicts import MIN_SEEDS
from labkit.config import UserError


# --- findings from made-up run directories --------------------------------------------------------------------

def _fake_run(path: Path, steps: int, curves: dict, edge=None):
    """A run directory as the stages leave it: metrics.jsonl (evaluations at evenly spaced steps; a curve's key is
    a split, or "split:metric") and the last checkpoint; `edge` = (kept, always, never) of an RL run's filter."""
    path.mkdir(parents=True)
    rows = []
    for key, values in curves.items():
        split, _, metric = key.partition(":")
        for i, v in enumerate(values):
            rows.append({"step": steps * i // (len(values) - 1), "split": split, "metric": metric or "pass@1",
                         "value": v, "wall_time": 10.0 * i})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / experiments._ckpt(steps)).mkdir(parents=True)
    if edge:
        (path / FILTER_FILE).write_text(json.dumps(dict(zip(("kept", "always", "never"), edge))))


def _suite_dir(tmp_path, target: dict[str, list[float]], e2: list[tuple], sft_long: list[float], rl_base: dict,
               e4: dict[str, list], rl_train=(0.5, 0.7), forgetting=(0.3, 0.05)):
    """Made-up runs of every experiment, 3 seeds unless the lists are shorter. E1's atomic+60 is RL's start."""
    cfg = config.resolve(experiments.FindingsConfig, "paper", {
        "out_dir": str(tmp_path), "data_dir": str(tmp_path / "data"), "base_model": "embedded", "sizes": [20, 60],
        "rl_start": 60, "synthetic_only": 60, "sft_steps": 10, "rl_steps": 4, "long_steps": 12, "rl_base_steps": 4,
        "reward_modes": list(experiments.MODES)})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({"counts": {"test_in_domain": 300,
                                                                           "test_target": 300}}))
    root = tmp_path / "runs"
    for name, per_seed in target.items():
        for s, v in enumerate(per_seed):
            _fake_run(root / "e1" / name / f"s{s}", 10, {
                "train": [0.2, 1.0], "test_in_domain": [0.0, v], "test_target": [0.0, v],
                "test_target:pass@1/held_out_atom": [0.0, 1.0], "test_target:pass@1/held_out_pair": [0.0, 0.0]})
    for s, (start, same, fresh) in enumerate(e2):
        for name, end in (("rl-same", same), ("rl-fresh", fresh)):
            _fake_run(root / "e2" / name / f"s{s}", 4, {"train": list(rl_train), "test_target": [start, end],
                                                         "test_in_domain": [0.1, 0.1]}, edge=(30, 10, 24))
    sft_forget, rl_forget = forgetting
    for s in range(len(rl_base and e2 or [])):
        _fake_run(root / "e3" / "sft-long" / f"s{s}", 12, {
            "test_target": sft_long, "train": [0.4, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0][:len(sft_long)],
            "general:loss": [2.0 + sft_forget * i for i in range(len(sft_long))],
            "train:kl_to_init": [0.0 + i for i in range(len(sft_long))]})
        _fake_run(root / "e3" / "rl-base" / f"s{s}", 4, {**rl_base, "general:loss": [2.0, 2.0 + rl_forget],
                                                          "train:kl_to_init": [0.0, 0.5]}, edge=(20, 5, 75))
    for mode, values in e4.items():
        for s, v in enumerate(values):
            name = "e2/rl-fresh" if mode == "binary" else f"e4/{mode}"
            if mode == "binary":   # E2's fresh run is the binary run: give it this test_in_domain curve
                rows = [r for r in runs.read_jsonl(root / name / f"s{s}" / "metrics.jsonl")
                        if r["split"] != "test_in_domain"]
                rows += [{"step": 0, "split": "test_in_domain", "metric": "pass@1", "value": 0.1, "wall_time": 0.0},
                         {"step": 4, "split": "test_in_domain", "metric": "pass@1", "value": v, "wall_time": 10.0}]
                runs.write_jsonl(root / name / f"s{s}" / "metrics.jsonl", rows)
            else:
                _fake_run(root / name / f"s{s}", 4, {"test_in_domain": [0.1, v], "train": list(rl_train)})
    return cfg


E2_RISES = [(0.1, 0.2, 0.3), (0.1, 0.25, 0.3), (0.12, 0.2, 0.1)]
SFT_PEAKS = [0.0, 0.2, 0.3, 0.3, 0.2, 0.1, 0.1]     # peak window 0.3, end 0.1: drop 0.2
RL_RISES = {"train": [0.6, 0.9], "test_target": [0.0, 0.0]}
RL_STUCK = {"train": [0.6, 0.62], "test_target": [0.0, 0.0]}
E4_ORDERED = {"binary": [0.1, 0.11, 0.12], "coarse": [0.2, 0.21, 0.2], "fine": [0.3, 0.3, 0.32],
              "adaptive": [0.4, 0.42, 0.41]}


def test_findings_reproduced_when_the_numbers_say_so(tmp_path):
    cfg = _suite_dir(tmp_path, target={"atomic-only": [0.0, 0.0, 0.01], "atomic+20": [0.20, 0.20, 0.21],
                                       "atomic+60": [0.30, 0.32, 0.28], "synthetic-only-60": [0.1, 0.12, 0.08]},
                     e2=E2_RISES, sft_long=SFT_PEAKS, rl_base=RL_RISES, e4=E4_ORDERED)
    r = experiments.findings(cfg)
    assert all(p["holds"] for p in r["preconditions"].values()), r["preconditions"]
    assert r["preconditions"]["sft_target_in_range"] == {"value": 0.3, "threshold": [0.1, 0.8], "holds": True}
    assert r["F1"]["handful"] == 20                    # 0.2 of 0.3: past half the largest gain
    assert r["F1"]["verdict"] == "reproduced" and r["F1"]["per_seed"] == [0.1, 0.08, 0.13]
    assert r["F1"]["final_pass@1"]["atomic+60"]["by_kind"][0] == {"held_out_atom": 1.0, "held_out_pair": 0.0}
    assert r["F2"]["verdict"] == "reproduced" and r["F2"]["per_seed"] == [0.1, 0.15, 0.08]
    assert r["F2_fresh"]["verdict"] == "inconclusive"  # 0.2, 0.2, -0.02: m=0.127 <= sd
    assert r["F3a"]["verdict"] == "reproduced" and r["F3a"]["per_seed"] == [0.2, 0.2, 0.2]
    m = r["F3b"]["matched"][0]
    assert m["rl_gain"] == 0.3 and m["sft_step"] == 6 and m["sft_gain"] == 0.3     # train 0.4 -> 0.7 at step 6
    assert m["sft_forgetting"] == 0.9 and m["rl_forgetting"] == 0.05 and m["sft_kl"] == 3.0
    assert r["F3b"]["verdict"] == "reproduced"
    assert r["reward_ordering"]["verdict"] == "reproduced"
    assert r["reward_ordering"]["observed_order"] == ["binary", "coarse", "fine", "adaptive"]
    assert "precondition rl_learns_from_base: holds" in experiments.summary(r)
    assert r["run_seconds"]["e1/atomic-only/s0"] == 10 and r["run_seconds"]["total"] > 0


def test_findings_not_reproduced_or_inconclusive_when_they_do_not(tmp_path):
    cfg = _suite_dir(tmp_path, target={"atomic-only": [0.0, 0.0, 0.0], "atomic+20": [0.05, 0.05, 0.06],
                                       "atomic+60": [0.10, 0.12, 0.08], "synthetic-only-60": [0.2, 0.2, 0.2]},
                     e2=[(0.1, 0.1, 0.3), (0.1, 0.05, 0.3), (0.12, 0.12, 0.3)], sft_long=[0.0, 0.2, 0.3, 0.3],
                     rl_base=RL_STUCK, e4={**E4_ORDERED, "binary": [0.3, 0.31, 0.3]}, forgetting=(0.0, 0.1))
    r = experiments.findings(cfg)
    assert r["F1"]["verdict"] == "not reproduced"        # synthetic only beats the mixture
    assert r["F2"]["verdict"] == "not reproduced"        # 0, -0.05, 0
    assert r["F2_fresh"]["verdict"] == "reproduced"
    # RL from the base learned nothing and SFT never fell: F3 cannot be judged.
    assert not r["preconditions"]["rl_learns_from_base"]["holds"]
    assert not r["preconditions"]["sft_peak_then_drop"]["holds"]
    assert r["F3a"]["verdict"].startswith("inconclusive (precondition rl_learns_from_base does not hold")
    assert r["F3b"]["verdict"].startswith("inconclusive (precondition")
    assert r["reward_ordering"]["verdict"] == "not reproduced"   # coarse < binary
    assert r["reward_ordering"]["steps"]["fine<=adaptive"]["verdict"] == "reproduced"
    assert "DOES NOT HOLD" in experiments.summary(r)


def test_rl_that_does_not_learn_makes_its_findings_inconclusive(tmp_path):
    cfg = _suite_dir(tmp_path, target={"atomic-only": [0.0] * 3, "atomic+20": [0.2] * 3, "atomic+60": [0.3] * 3,
                                       "synthetic-only-60": [0.1] * 3},
                     e2=E2_RISES, sft_long=SFT_PEAKS, rl_base=RL_RISES, e4=E4_ORDERED, rl_train=(0.5, 0.55))
    r = experiments.findings(cfg)
    assert r["preconditions"]["rl_learns_from_sft"] == {"value": 0.05, "threshold": 0.15, "holds": False}
    for key in ("F2", "F2_fresh", "reward_ordering"):
        assert r[key]["verdict"].startswith("inconclusive (precondition rl_learns_from_sft"), key
    assert r["F3a"]["verdict"] == "reproduced"           # RL from the base did learn


def test_findings_with_missing_runs_use_only_complete_seeds(tmp_path):
    cfg = _suite_dir(tmp_path, target={"atomic-only": [0.0, 0.0], "atomic+20": [0.05, 0.05], "atomic+60": [0.3, 0.3],
                                       "synthetic-only-60": [0.1, 0.1]},
                     e2=[], sft_long=SFT_PEAKS, rl_base={}, e4={})
    r = experiments.findings(cfg)
    assert r["F1"]["seeds_used"] == [0, 1] and r["F1"]["verdict"].startswith("inconclusive (only 2 seeds")
    assert r["F2"]["n_seeds"] == 0 and r["F2"]["verdict"].startswith("inconclusive (only 0 seeds")
    assert r["reward_ordering"]["verdict"].startswith("inconclusive (only 0 seeds")
    assert not r["preconditions"]["rl_learns_from_sft"]["holds"]     # no runs: no value, not held


# --- the suite (its runner: tests/test_jobs.py) ---------------------------------------------------------------------------------

def test_suite_orders_rl_after_its_sft_start_and_checks_its_config():
    cfg = config.resolve(experiments.FindingsConfig, "paper", {"out_dir": "/tmp/x"})
    jobs = {j.name: j for j in experiments.suite(cfg)}
    assert len([n for n in jobs if n.startswith("e1/")]) == 3 * 6      # atomic only, 4 sizes, synthetic only
    assert jobs["e2/rl-same/s1"].after == ("data", "e1/atomic+1000/s1")   # the committed base: nothing to pretrain
    assert jobs["e1/atomic+1000/s1"].overrides["model.name_or_path"] == "base" and "base" not in jobs
    retrain = {j.name: j for j in experiments.suite(config.resolve(experiments.FindingsConfig, "paper", {
        "out_dir": "/tmp/x", "base_model": ""}))}
    assert retrain["e2/rl-same/s1"].after == ("data", "base", "e1/atomic+1000/s1")
    rl_base, long = jobs["e3/rl-base/s0"].overrides, jobs["e3/sft-long/s0"].overrides
    assert rl_base["prompts"] == "atom_base,atom_call,train_B" and long["mixture"] == {
        "atom_base": 1.0, "atom_call": 3.0, "train_B": 1.0}                # the same prompts
    assert long["schedule"] == "constant" and rl_base["eval.general_blocks"] == long["eval.general_blocks"] > 0
    assert rl_base["lr"] == 3e-5 and "lr" not in jobs["e2/rl-same/s0"].overrides
    assert jobs["e1/atomic+300/s2"].overrides["mixture"] == {"atom_base": 1.0, "atom_call": 3.0, "train_C:300": 1.0}
    assert "e4/binary/s0" not in jobs and "reward=fine" in jobs["e4/fine/s0"].argv()   # binary: e2/rl-fresh
    assert experiments.e4_run(cfg, "binary") == "e2/rl-fresh"
    rltf = config.resolve(experiments.FindingsConfig, "paper", {"ablation_algorithm": "rltf"})
    assert "e4/binary/s0" in {j.name for j in experiments.suite(rltf)}
    with pytest.raises(UserError, match="rl_start"):
        experiments.suite(config.resolve(experiments.FindingsConfig, "paper", {"rl_start": 7}))


@pytest.mark.slow
def test_smoke_suite_end_to_end(tmp_path):
    cfg = config.resolve(experiments.FindingsConfig, "smoke", {"out_dir": str(tmp_path / "suite"),
                                                               "figures_dir": str(tmp_path / "figures"),
                                                               "experiments": ["E1", "E2", "E3", "E4"]})
    result = experiments.run(cfg)
    assert result["failed"] == [] and result["runs_complete"] == len(experiments.suite(cfg)) - 1   # all but the data
    saved = json.loads((tmp_path / "figures" / "findings.json").read_text())
    for key in experiments.FINDINGS:
        assert saved[key]["verdict"].startswith("inconclusive (only 1 seed"), key
    assert set(saved["preconditions"]) >= {"rl_learns_from_base", "rl_learns_from_sft", "sft_peak_then_drop",
                                           "sft_target_in_range", "eval_tasks"}
    again = experiments.run(cfg)   # everything complete: nothing runs, same numbers
    assert {k: again[k] for k in experiments.FINDINGS} == {k: result[k] for k in experiments.FINDINGS}


def test_the_committed_reference_findings_decide_every_finding():
    # Notebook 07 shows these at `quick` (the main job): they must be complete and readable as a summary.
    result = experiments.reference()
    for key in experiments.FINDINGS:
        assert result[key]["verdict"] and result[key]["seeds_used"] == result["seeds"], key
    assert len(result["seeds"]) >= MIN_SEEDS and not result["failed"]
    assert all(set(p) == {"value", "threshold", "holds"} for p in result["preconditions"].values())
    assert "F1:" in experiments.summary(result)
    for stem in ("f1-mixtures", "f2-rl-after-sft", "f3a-overfitting", "f3b-forgetting", "reward-ordering"):
        assert (experiments.REFERENCE / f"{stem}.png").exists(), stem


def test_reference_without_findings_names_the_command(tmp_path):
    with pytest.raises(UserError, match="findings --preset paper"):
        experiments.reference(tmp_path)


# --- the stage and its figures (labkit.viz.findings, above this module) -------------------------------------------

def _reproduced_suite(tmp_path):
    """The made-up suite of the first findings test, its figures_dir inside tmp_path (not the committed one)."""
    cfg = _suite_dir(tmp_path, target={"atomic-only": [0.0, 0.0, 0.01], "atomic+20": [0.20, 0.20, 0.21],
                                       "atomic+60": [0.30, 0.32, 0.28], "synthetic-only-60": [0.1, 0.12, 0.08]},
                     e2=E2_RISES, sft_long=SFT_PEAKS, rl_base=RL_RISES, e4=E4_ORDERED)
    return dataclasses.replace(cfg, figures_dir=str(tmp_path / "figures"))


def test_findings_figures_are_drawn_from_the_run_directories(tmp_path):
    from labkit.viz import findings

    cfg = _reproduced_suite(tmp_path)
    figs = findings.figures(cfg)
    assert set(figs) == {"f1-mixtures", "f2-rl-after-sft", "f3a-overfitting", "f3b-forgetting", "reward-ordering"}
    f1 = figs["f1-mixtures"]
    mix = [t for t in f1.data if t.name == "atomic + N composites"]
    assert len(mix) == 3 and list(mix[0].x) == [20, 60]   # "all" and each kind the runs have (no deeper here)
    assert list(mix[0].y) == pytest.approx([0.61 / 3, 0.30])
    assert list(mix[1].y) == [1.0, 1.0] and list(mix[2].y) == [0.0, 0.0]   # held-out atoms, held-out pairs
    assert "reproduced" in f1.layout.title.text and "N* = 20" in f1.layout.title.text
    lines = [t for t in figs["f2-rl-after-sft"].data if t.name == "same prompts as SFT"]
    assert [list(t.y) for t in lines[:3]] == [[0.1, 0.2], [0.1, 0.25], [0.12, 0.2]]   # each seed: start -> end
    assert sum(t.showlegend is not False for t in figs["f2-rl-after-sft"].data if t.name) == 2   # a short legend
    circled = [t for t in figs["f3b-forgetting"].data if t.marker.symbol == "circle-open"]
    assert len(circled) == 2 * 3 and list(circled[0].x) == [0.3, 0.3]   # matched gains, per seed and panel
    bars = [t for t in figs["reward-ordering"].data if t.type == "bar"]
    assert [b.x[0] for b in bars] == list(experiments.MODES)


def test_the_committed_f3a_sweep_draws_each_run_with_its_drop():
    from labkit.viz import findings

    sweep = json.loads((experiments.REFERENCE / "f3a_sweep.json").read_text())
    fig = findings.f3a_sweep_figure(sweep)
    assert len(fig.data) == 2 * len(sweep["points"]) >= 2   # target and train panels, one line per run
    for trace, (name, point) in zip(fig.data[::2], sweep["points"].items()):
        drop = point["test_target_window_drop"]["drop"]
        assert f"seed {point['seed']}" in trace.name and f"drop {drop:.3f}" in trace.name
        assert list(trace.y) == [v for _, v in point["curves"]["test_target"]]


def test_findings_stage_writes_the_json_then_the_figures_beside_it(tmp_path, monkeypatch, capsys):
    from labkit import cli
    from labkit.viz import export, findings

    cfg = _reproduced_suite(tmp_path)

    def numbers_only(cfg):   # experiments.run without running the suite: decide and write findings.json
        result = {**experiments.findings(cfg), "failed": []}
        experiments.write(cfg, result)
        return result

    monkeypatch.setattr(experiments, "run", numbers_only)
    assert findings.run_cli(cfg, None) == 0
    out = tmp_path / "figures"
    assert json.loads((out / "findings.json").read_text())["F1"]["verdict"] == "reproduced"
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert pngs == (sorted(findings.figures(cfg)) if export.chrome() else [])
    if pngs:
        assert (out / "f1-mixtures.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.html"))   # PNGs only, as before the move
    with pytest.raises(SystemExit) as stop:
        cli.main(["findings", "--help"])
    assert stop.value.code == 0 and "--figures" in capsys.readouterr().out
