"""pass@k out to large k: the estimator, the curves, the crossover, the solved sets, and the stage end to end."""
import json
import math

import pytest

from labkit import cli, evaluate, passk


def test_unbiased_pass_at_k_matches_the_closed_form():
    assert evaluate.pass_at_k(10, 3, 5) == pytest.approx(0.916667, abs=1e-6)
    assert evaluate.pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))
    assert evaluate.pass_at_k(10, 0, 5) == 0.0 and evaluate.pass_at_k(10, 6, 5) == 1.0


def test_k_runs_over_powers_of_two_up_to_n():
    assert passk.ks(64) == [1, 2, 4, 8, 16, 32, 64]
    assert passk.ks(10) == [1, 2, 4, 8, 10]


def test_curve_averages_the_estimator_over_tasks_with_its_standard_error():
    c = passk.curve([3, 0, 10], n=10)
    assert c["k"] == [1, 2, 4, 8, 10]
    assert c["pass"][0] == pytest.approx((0.3 + 0 + 1) / 3)
    assert c["pass"][-1] == pytest.approx(2 / 3)           # at k = n: solved at all
    assert all(a <= b for a, b in zip(c["pass"], c["pass"][1:]))
    assert c["se"][-1] == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))


def test_crossover_is_where_the_curve_behind_at_k1_catches_up():
    rl = {"k": [1, 2, 4, 8], "pass": [0.5, 0.6, 0.65, 0.7]}
    base = {"k": [1, 2, 4, 8], "pass": [0.2, 0.4, 0.65, 0.8]}
    assert passk.crossover(rl, base) == passk.crossover(base, rl) == 4
    assert passk.crossover(rl, {"k": [1, 2, 4, 8], "pass": [0.1, 0.2, 0.3, 0.4]}) is None
    assert passk.crossover(rl, rl) is None


def test_solved_sets_count_new_and_lost_abilities():
    rl = {"a": 3, "b": 0, "c": 1, "d": 0}
    base = {"a": 1, "b": 2, "c": 0, "d": 0}
    assert passk.solved_sets(rl, base) == {"new": 0.25, "lost": 0.25, "tasks": 4}


def test_the_stage_writes_curves_counts_crossovers_and_solved_sets(tiny_model_dir, smoke_data, tmp_path):
    out = tmp_path / "passk"
    models = json.dumps({"base": tiny_model_dir, "other": tiny_model_dir})
    code = cli.main(["passk", "--preset", "smoke", "--data", smoke_data, "--out", str(out), "--set", f"models={models}",
                     "--set", "splits=test_in_domain,test_target", "--set", "device=cpu"])
    assert code == 0
    result = json.loads((out / "passk.json").read_text())
    assert set(result["models"]) == {"base", "other"}
    curve = result["models"]["base"]["test_target"]
    assert curve["k"] == [1, 2, 4] and len(curve["counts"]) == 4
    assert all(0 <= c <= 4 for c in curve["counts"].values())
    # same weights, same seed: the same samples, so the same counts and no new abilities
    assert result["models"]["other"]["test_target"]["counts"] == curve["counts"]
    assert result["solved"]["test_target"]["other"]["new"] == 0.0
    assert "base vs other" in result["crossover"]["test_in_domain"]


def test_bad_input_exits_2_with_the_fix(tiny_model_dir, tmp_path, capsys):
    code = cli.main(["passk", "--set", f'models={{"sft": "{tiny_model_dir}"}}', "--out", str(tmp_path)])
    assert code == 2 and "reference='base' is not one of the models" in capsys.readouterr().err
    code = cli.main(["passk", "--set", 'against={"rl": "sft"}', "--out", str(tmp_path)])
    assert code == 2 and "names labels that are not models" in capsys.readouterr().err
    code = cli.main(["passk", "--set", "n=0", "--out", str(tmp_path)])
    assert code == 2 and "n >= 1" in capsys.readouterr().err


def test_each_model_is_measured_against_its_start_where_named():
    counts = {"base": {"t": {"a": 0, "b": 0}}, "sft": {"t": {"a": 2, "b": 0}}, "rl": {"t": {"a": 4, "b": 1}}}
    result = passk.summarise(counts, n=4, reference="base", against={"rl": "sft"})
    assert result["against"] == {"sft": "base", "rl": "sft"}
    assert result["solved"]["t"]["rl"] == {"new": 0.5, "lost": 0.0, "tasks": 2}
    assert [line.split(" is ")[0] for line in passk.describe(result, "t")] == ["t: sft", "t: rl"]
    assert "than" not in passk.describe(result, "t")[1] and " sft at k=1" in passk.describe(result, "t")[1]


def test_describe_says_who_leads_where_the_curves_meet_and_what_was_gained():
    # 40 tasks: rl passes 8/8 where base passes 1-3 of 8, one task each side only the other solves
    base = {f"t{i}": 1 + i % 3 for i in range(38)} | {"new": 0, "lost": 3}
    rl = {f"t{i}": 8 for i in range(38)} | {"new": 1, "lost": 0}
    result = passk.summarise({"base": {"t": base}, "rl": {"t": rl}}, n=8, reference="base")
    (line,) = passk.describe(result, "t")
    assert line.startswith("t: rl is ahead of base at k=1") and "level with it at k=8" in line
    assert "solves 2.5% of the tasks that no sample of base solves" in line and "base solves 2.5% that no sample of rl does" in line
    # within noise: level
    (line,) = passk.describe(passk.summarise({"base": {"t": {"a": 4, "b": 0}}, "rl": {"t": {"a": 5, "b": 0}}}, 8, "base"), "t")
    assert "level with base at k=1" in line


def test_the_command_names_every_changed_key():
    cfg = passk.PassKConfig(models={"base": "base", "rl": "runs/rl"}, n=8)
    assert passk.command(cfg) == ("python -m labkit passk --set 'models={\"base\": \"base\", \"rl\": \"runs/rl\"}' "
                                  "--set 'n=8'")


def test_the_figures_have_a_panel_per_split_and_a_line_per_model():
    from labkit.viz import passk as vpassk
    counts = {"base": {"s": {"a": 1, "b": 0}, "t": {"a": 0, "b": 0}}, "rl": {"s": {"a": 4, "b": 0}, "t": {"a": 1, "b": 0}}}
    result = passk.summarise(counts, n=4, reference="base")
    fig = vpassk.curves(result)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 4 and {t.name for t in lines} == {"base", "rl"}
    assert fig.layout.xaxis.type == "log"
    bars = vpassk.solved_bars(result)
    assert [b.name for b in bars.data] == ["rl vs base: new", "rl vs base: lost"] and list(bars.data[0].y) == [0.0, 0.5]
