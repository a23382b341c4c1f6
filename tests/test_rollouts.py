"""Rollout tables (a row per completion RL sampled, RUN/rollouts/step-N.jsonl.gz) and reward integrity: the
logged `sample_pass_rate` is the binary task metric whatever the reward mode. Smoke runs' tables are checked
in tests/test_rl.py (`_smoke`), resume's clean-up in tests/test_runs.py, the dashboard's browser in
tests/test_viz.py."""
import gzip
import json

import pandas as pd
import pytest

from labkit import rollouts, runs

COLUMNS = {"step", "task_id", "split", "sample", "completion", "tokens", "truncated", "reward", "status",
           "error_type", "error_line", "error_class", "tests_passed", "tests_total", "penalty_line",
           "penalty_start", "penalty_end", "penalty_tokens"}


def test_the_fine_table_names_the_penalised_line_and_its_span(add_one_rollout, tokenizer, tmp_path):
    BODY = add_one_rollout.line_error
    rollout = add_one_rollout(tokenizer, [BODY] * 2)
    rows = rollouts.rollout_table(rollout, rollouts.reward_rollout(rollout, "fine", timeout=5.0))
    assert len(rows) == 2 and [r["sample"] for r in rows] == [0, 1]
    row = rows[0]
    assert (row["status"], row["error_type"], row["error_line"], row["error_class"]) == \
        ("runtime_error", "NameError", 3, "line")
    assert row["reward"] == pytest.approx(-0.6) and row["completion"] == BODY and not row["truncated"]
    # The span covers exactly the tokens the penalty went to: the third line, `return undefined_name + z`.
    third = BODY.index("    return")
    on_line = sum(third <= s < len(BODY) for s, _ in rollout.offsets[0])
    assert (row["penalty_line"], row["penalty_tokens"]) == (3, on_line)
    assert third <= row["penalty_start"] and row["penalty_end"] == len(BODY)
    assert BODY[row["penalty_start"]:row["penalty_end"]].strip() == "return undefined_name + z"

    run = runs.RunDir(tmp_path)
    path = run.write_rollouts(7, rows)
    assert path == tmp_path / "rollouts" / "step-000007.jsonl.gz"
    first = path.read_bytes()
    assert run.write_rollouts(7, rows).read_bytes() == first   # a step re-taken after a resume: the same bytes
    assert [json.loads(line)["step"] for line in gzip.decompress(first).splitlines()] == [7, 7]
    df = pd.read_json(path, lines=True)           # pandas reads one step's file as it is
    assert set(df.columns) == COLUMNS and len(df) == 2
    both = runs.read_rollouts(tmp_path)
    assert set(both.columns) == COLUMNS and both.step.tolist() == [7, 7]
    assert both.penalty_line.tolist() == [3, 3] and both.completion[0] == BODY


def test_other_modes_leave_the_penalty_columns_empty(add_one_rollout, tokenizer):
    rollout = add_one_rollout(tokenizer, [add_one_rollout.line_error])
    (row,) = rollouts.rollout_table(rollout, rollouts.reward_rollout(rollout, "coarse", timeout=5.0))
    assert row["error_class"] == "line"       # what `fine` would penalise, classified in every mode
    assert (row["penalty_line"], row["penalty_start"], row["penalty_end"], row["penalty_tokens"]) == \
        (None, None, None, 0)


# --- reward integrity ------------------------------------------------------------------------------------------

BODIES = {
    "correct": "    return x + 1\n",
    "wrong": "    return 0\n",
    "error": "    y = x + 1\n    z = y * 2\n    return undefined_name + z\n",   # NameError on line 3
    # An object equal to everything: `==` would let it pass; the canonical-JSON tests do not.
    "eq_hack": "    class Anything:\n        def __eq__(self, other):\n            return True\n    return Anything()\n",
    "half": "    return 2 if x == 1 else 0\n",    # passes one test of two: partial credit in the shaped modes
}


def _logged(rollout, scored) -> dict:
    return {r["metric"]: r["value"] for r in rollouts.rollout_records(rollout, scored, None)}


def test_sample_pass_rate_is_the_binary_pass_share_whatever_the_reward_mode(add_one_rollout, tokenizer):
    rollout = add_one_rollout(tokenizer, list(BODIES.values()))
    logged = {}
    for mode in ("binary", "pass_ratio", "coarse", "adaptive", "fine"):
        scored = rollouts.reward_rollout(rollout, mode, timeout=5.0)
        statuses = dict(zip(BODIES, (v.status for v in scored.verdicts)))
        assert statuses == {"correct": "pass", "wrong": "fail", "error": "runtime_error", "eq_hack": "fail",
                            "half": "fail"}, statuses
        logged[mode] = _logged(rollout, scored)
        # The shaped modes reward the failures differently (the batch's rewards differ) ...
        if mode in ("coarse", "adaptive"):
            assert len(set(scored.rewards.tolist())) >= 3, scored.rewards
        # ... but the metric is one pass in five, the share of status "pass" in the step's rollout table.
        assert logged[mode]["sample_pass_rate"] == 1 / 5
        table = pd.DataFrame(rollouts.rollout_table(rollout, scored))
        assert logged[mode]["sample_pass_rate"] == (table.status == "pass").mean()
        assert logged[mode]["reward_mean"] == pytest.approx(table.reward.mean(), abs=1e-6)
    # The rewards' mean depends on the mode; the binary metric does not.
    assert len({round(v["reward_mean"], 6) for v in logged.values()}) >= 4
    assert logged["binary"]["reward_mean"] == pytest.approx(logged["binary"]["sample_pass_rate"])
