"""The findings suite: the verdict rules on made-up numbers (each verdict can come out either way), the runner's
skip-if-complete and dependency handling, and the smoke suite end to end (slow)."""
import dataclasses
import json
from pathlib import Path

import pytest

from labkit import config, experiments, tasks
from labkit.config import UserError


# --- the rule -------------------------------------------------------------------------------------------------

def test_decide_reproduced_needs_the_mean_above_its_spread():
    assert experiments.decide([0.10, 0.12, 0.14])["verdict"] == "reproduced"              # m=0.12, sd=0.02
    assert experiments.decide([0.30, -0.05, 0.05])["verdict"] == "inconclusive"           # m=0.10 <= sd
    assert experiments.decide([0.0, 0.0, 0.0])["verdict"] == "not reproduced"             # no effect
    assert experiments.decide([-0.1, 0.2, -0.2])["verdict"] == "not reproduced"           # wrong sign on average
    r = experiments.decide([0.2, 0.3])
    assert r["verdict"].startswith("inconclusive (only 2 seeds") and r["mean"] == 0.25
    assert experiments.decide([0.1, 0.2, 0.3]) == {"per_seed": [0.1, 0.2, 0.3], "mean": 0.2, "sd": 0.1, "n_seeds": 3,
                                          "verdict": "reproduced"}


# --- findings from made-up run directories --------------------------------------------------------------------

def _fake_run(path: Path, steps: int, curves: dict[str, list[float]], kinds=None):
    """A run directory as the stages leave it: metrics.jsonl (evaluations at evenly spaced steps), the last
    checkpoint, and the last evaluation's greedy test_target samples (`kinds`: task id -> passed)."""
    path.mkdir(parents=True)
    rows = []
    for split, values in curves.items():
        for i, v in enumerate(values):
            rows.append({"step": steps * i // (len(values) - 1), "split": split, "metric": "pass@1", "value": v})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / experiments._ckpt(steps)).mkdir(parents=True)
    (path / "samples").mkdir()
    samples = [{"task_id": t, "split": "test_target", "mode": "greedy", "status": "pass" if ok else "fail"}
               for t, ok in (kinds or {}).items()]
    (path / "samples" / f"step-{steps:06d}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))


def _suite_dir(tmp_path, target: dict[str, list[float]], e2: list[tuple], sft_peaks: bool, e3_rl,
               e4: dict[str, list]):
    """Made-up runs of every experiment. The E1 handful run is also E3's SFT run: its target curve ends at its
    E1 value, after a peak 0.2 higher if `sft_peaks`."""
    cfg = config.resolve(experiments.FindingsConfig, "paper", {"out_dir": str(tmp_path), "data_dir": str(tmp_path / "data"),
                                                      "base_model": "embedded", "sizes": [20, 60], "handful": 60,
                                                      "synthetic_only": 60, "sft_steps": 10, "rl_steps": 4,
                                                      "rl_base_steps": 4})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test_target.jsonl").write_text(
        "".join(json.dumps({"id": f"t{i}", "kind": k}) + "\n" for i, k in enumerate(tasks.KINDS)))
    root = tmp_path / "runs"
    for name, per_seed in target.items():
        for s, v in enumerate(per_seed):
            curves = {"train": [0.2, 0.8, 1.0], "test_in_domain": [0.0, v], "test_target": [0.0, v]}
            if name == "atomic+60":
                curves["test_target"] = [0.0, v + 0.2 if sft_peaks else v / 2, v]
            _fake_run(root / "e1" / name / f"s{s}", 10, curves, {"t0": True, "t1": False, "t2": v > 0})
    for s, (start, same, fresh) in enumerate(e2):
        for name, end in (("rl-same", same), ("rl-fresh", fresh)):
            _fake_run(root / "e2" / name / f"s{s}", 4, {"train": [0.5, 0.6], "test_target": [start, end]})
    for s, curves in enumerate(e3_rl):
        _fake_run(root / "e3" / "rl-base" / f"s{s}", 4, curves)
    for mode, values in e4.items():
        for s, v in enumerate(values):
            _fake_run(root / "e4" / mode / f"s{s}", 4, {"test_in_domain": [0.1, v]})
    return cfg


RL_RISES = {"train": [0.2, 0.4, 0.5], "test_target": [0.0, 0.1, 0.15]}
RL_STUCK = {"train": [0.2, 0.2, 0.21], "test_target": [0.0, 0.0, 0.0]}


def test_findings_reproduced_when_the_numbers_say_so(tmp_path):
    cfg = _suite_dir(tmp_path,
                     target={"atomic-only": [0.0, 0.0, 0.01], "atomic+20": [0.05, 0.05, 0.06],
                             "atomic+60": [0.30, 0.32, 0.28], "synthetic-only-60": [0.1, 0.12, 0.08]},
                     e2=[(0.1, 0.2, 0.3), (0.1, 0.25, 0.3), (0.12, 0.2, 0.1)],
                     sft_peaks=True, e3_rl=[RL_RISES] * 3,
                     e4={"binary": [0.1, 0.11, 0.12], "coarse": [0.2, 0.21, 0.2], "fine": [0.3, 0.3, 0.32],
                         "adaptive": [0.4, 0.42, 0.41]})
    r = experiments.findings(cfg)
    assert r["F1"]["verdict"] == "reproduced"
    assert r["F1"]["per_seed"] == [0.2, 0.2, 0.2]      # minus synthetic only, the better of the two
    assert r["F1"]["final_pass@1"]["atomic+60"]["by_kind"][0] == {"held_out_atom": 1.0, "held_out_pair": 0.0,
                                                                  "deeper": 1.0}
    assert r["F2"]["verdict"] == "reproduced" and r["F2"]["per_seed"] == [0.1, 0.15, 0.08]
    assert r["F2_fresh"]["verdict"] == "inconclusive"  # 0.2, 0.2, -0.02: m=0.127 <= sd
    assert r["F3"]["verdict"] == "reproduced" and r["F3"]["per_seed"] == [0.2, 0.2, 0.2]
    assert r["reward_ordering"]["verdict"] == "reproduced"
    assert r["reward_ordering"]["observed_order"] == ["binary", "coarse", "fine", "adaptive"]


def test_findings_not_reproduced_or_inconclusive_when_they_do_not(tmp_path):
    cfg = _suite_dir(tmp_path,
                     target={"atomic-only": [0.0, 0.0, 0.0], "atomic+20": [0.05, 0.05, 0.06],
                             "atomic+60": [0.10, 0.12, 0.08], "synthetic-only-60": [0.2, 0.2, 0.2]},
                     e2=[(0.1, 0.1, 0.3), (0.1, 0.05, 0.3), (0.12, 0.12, 0.3)],
                     sft_peaks=False, e3_rl=[RL_STUCK] * 3,
                     e4={"binary": [0.3, 0.31, 0.3], "coarse": [0.2, 0.21, 0.2], "fine": [0.3, 0.3, 0.32],
                         "adaptive": [0.4, 0.42, 0.41]})
    r = experiments.findings(cfg)
    assert r["F1"]["verdict"] == "not reproduced"        # synthetic only beats the mixture
    assert r["F2"]["verdict"] == "not reproduced"        # 0, -0.05, 0
    assert r["F2_fresh"]["verdict"] == "reproduced"
    # SFT shows no drop, and RL from base learned nothing: the precondition makes it inconclusive.
    assert r["F3"]["verdict"].startswith("inconclusive (RL from the base did not learn")
    assert r["reward_ordering"]["verdict"] == "not reproduced"   # coarse < binary
    assert r["reward_ordering"]["steps"]["fine<=adaptive"]["verdict"] == "reproduced"


def test_findings_with_missing_runs_use_only_complete_seeds(tmp_path):
    cfg = _suite_dir(tmp_path,
                     target={"atomic-only": [0.0, 0.0], "atomic+20": [0.05, 0.05], "atomic+60": [0.3, 0.3],
                             "synthetic-only-60": [0.1, 0.1]},
                     e2=[], sft_peaks=True, e3_rl=[], e4={})
    r = experiments.findings(cfg)
    assert r["F1"]["seeds_used"] == [0, 1] and r["F1"]["verdict"].startswith("inconclusive (only 2 seeds")
    assert r["F2"]["n_seeds"] == 0 and r["F2"]["verdict"].startswith("inconclusive (only 0 seeds")
    assert r["reward_ordering"]["verdict"].startswith("inconclusive (only 0 seeds")


# --- the suite (its runner: tests/test_jobs.py) ---------------------------------------------------------------------------------

def test_suite_orders_rl_after_its_sft_start_and_checks_its_config():
    cfg = config.resolve(experiments.FindingsConfig, "paper", {"out_dir": "/tmp/x"})
    jobs = {j.name: j for j in experiments.suite(cfg)}
    assert len([n for n in jobs if n.startswith("e1/")]) == 3 * 4      # atomic only, 2 sizes, synthetic only
    assert jobs["e2/rl-same/s1"].after == ("data", "e2/sft-start/s1")   # the committed base: nothing to pretrain
    assert jobs["e2/sft-start/s1"].overrides["model.name_or_path"] == "base" and "base" not in jobs
    retrain = {j.name: j for j in experiments.suite(config.resolve(experiments.FindingsConfig, "paper", {
        "out_dir": "/tmp/x", "base_model": ""}))}
    assert retrain["e2/rl-same/s1"].after == ("data", "base", "e2/sft-start/s1")
    assert jobs["e3/rl-base/s0"].overrides["prompts"] == "atom_base,atom_call,train_B"
    assert jobs["e3/rl-base/s0"].overrides["lr"] == 3e-5 and "lr" not in jobs["e2/rl-same/s0"].overrides
    assert jobs["e1/atomic+1000/s2"].overrides["mixture"] == {"atom_base": 1.0, "atom_call": 3.0, "train_B": 1.0}
    assert "--set" in jobs["e4/fine/s0"].argv() and "reward=fine" in jobs["e4/fine/s0"].argv()
    with pytest.raises(UserError, match="handful"):
        experiments.suite(config.resolve(experiments.FindingsConfig, "paper", {"handful": 7}))


@pytest.mark.slow
def test_smoke_suite_end_to_end(tmp_path):
    cfg = config.resolve(experiments.FindingsConfig, "smoke", {"out_dir": str(tmp_path / "suite"),
                                                      "figures_dir": str(tmp_path / "figures")})
    result = experiments.run(cfg)
    assert result["failed"] == [] and result["runs_complete"] == len(experiments.suite(cfg)) - 1   # all but the data
    saved = json.loads((tmp_path / "figures" / "findings.json").read_text())
    for key in ("F1", "F2", "F3", "reward_ordering"):
        assert saved[key]["verdict"].startswith("inconclusive (only 1 seed")
    again = experiments.run(cfg)   # everything complete: nothing runs, same numbers
    assert {k: again[k] for k in ("F1", "F2", "F3")} == {k: result[k] for k in ("F1", "F2", "F3")}


def test_the_committed_reference_findings_decide_every_finding():
    # Notebook 07 shows these at `quick` (the main job): they must be complete and readable as a summary.
    result = experiments.reference()
    for key in ("F1", "F2", "F3", "reward_ordering"):
        assert result[key]["verdict"] and result[key]["seeds_used"] == result["seeds"], key
    assert len(result["seeds"]) >= experiments.MIN_SEEDS and not result["failed"]
    assert "F1:" in experiments.summary(result)
    for stem in ("e1-sweep", "e2-target-curves", "e4-reward-modes"):
        assert (experiments.REFERENCE / f"{stem}.png").exists(), stem


def test_reference_without_findings_names_the_command(tmp_path):
    with pytest.raises(UserError, match="findings --preset paper"):
        experiments.reference(tmp_path)


# --- the stage and its figures (labkit.viz.findings, above this module) -------------------------------------------

def _reproduced_suite(tmp_path):
    """The made-up suite of the first findings test, its figures_dir inside tmp_path (not the committed one)."""
    cfg = _suite_dir(tmp_path,
                     target={"atomic-only": [0.0, 0.0, 0.01], "atomic+20": [0.05, 0.05, 0.06],
                             "atomic+60": [0.30, 0.32, 0.28], "synthetic-only-60": [0.1, 0.12, 0.08]},
                     e2=[(0.1, 0.2, 0.3), (0.1, 0.25, 0.3), (0.12, 0.2, 0.1)], sft_peaks=True,
                     e3_rl=[RL_RISES] * 3, e4={m: [0.1, 0.2, 0.3] for m in experiments.MODES})
    return dataclasses.replace(cfg, figures_dir=str(tmp_path / "figures"))


def test_findings_figures_are_drawn_from_the_run_directories(tmp_path):
    from labkit.viz import findings

    figs = findings.figures(_reproduced_suite(tmp_path))
    assert set(figs) == {"e1-sweep", "e1-target-curves", "e2-target-curves", "e2-train-curves", "e1-atomic+60-gap",
                         "e3-rl-base-gap", "e4-reward-modes"}
    sweep = {t.name: t for t in figs["e1-sweep"].data}
    assert list(sweep["atomic + N · all"].x) == [0, 20, 60]
    assert list(sweep["atomic + N · all"].y) == pytest.approx([0.01 / 3, 0.16 / 3, 0.30])
    assert list(sweep["synthetic only · all"].x) == [60] and sweep["synthetic only · all"].y[0] == pytest.approx(0.1)
    # per kind, from the last evaluation's samples: t0 (held-out atom) passes everywhere, t1 (pair) nowhere
    assert list(sweep["atomic + N · held_out_atom"].y) == [1.0, 1.0, 1.0]
    assert list(sweep["atomic + N · held_out_pair"].y) == [0.0, 0.0, 0.0]


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
        assert (out / "e1-sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.html"))   # PNGs only, as before the move
    with pytest.raises(SystemExit) as stop:
        cli.main(["findings", "--help"])
    assert stop.value.code == 0 and "--figures" in capsys.readouterr().out
