"""RL: the GRPO math, token-level rewards reaching exactly the erroring line, smoke runs from the base model
and from an SFT checkpoint, and kill -9 + resume (tests/test_sft.py). The stop rule: tests/test_sampling.py."""
import pytest
import torch

import collections
import random

from labkit import loop, policy, rl, rollouts, sampling


# --- the math -----------------------------------------------------------------------------------------------

def test_group_advantages_are_normalised_within_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, -0.3, -0.3, -0.3, -0.3, 1.0, -1.0, 1.0, -1.0])
    adv = policy.group_advantages(rewards, group_size=4).view(3, 4)
    assert adv[0].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-3)   # (r - 0.25) / std 0.5
    assert adv[1].tolist() == [0.0] * 4          # all samples equal: nothing to learn (DESIGN §2.3)
    assert adv.sum(1).tolist() == pytest.approx([0.0] * 3, abs=1e-5)
    assert adv[2].tolist() == pytest.approx([0.866, -0.866, 0.866, -0.866], abs=1e-3)   # unbiased std


def test_k3_is_an_unbiased_nonnegative_kl_estimate():
    torch.manual_seed(0)
    p = torch.distributions.Categorical(logits=torch.randn(6))
    q = torch.distributions.Categorical(logits=torch.randn(6))
    x = p.sample((200_000,))
    est = policy.k3(p.log_prob(x), q.log_prob(x))
    assert (est >= 0).all()
    assert est.mean().item() == pytest.approx(torch.distributions.kl_divergence(p, q).item(), rel=0.02)
    assert policy.k3(torch.tensor([-1.2]), torch.tensor([-1.2])).item() == 0.0


def test_clipped_surrogate_stops_the_gradient_outside_the_trust_region():
    old = torch.zeros(4)
    logp = torch.tensor([0.5, 0.5, -0.5, -0.5], requires_grad=True)   # ratios e^0.5 > 1.2, e^-0.5 < 0.8
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    policy.clipped_surrogate(logp, old, adv, epsilon=0.2).sum().backward()
    # A ratio already past the clip in the direction the advantage pushes gets no more push; the others do.
    assert logp.grad[0] == 0 and logp.grad[3] == 0
    assert logp.grad[1] > 0 and logp.grad[2] < 0
    # At ratio 1 it is the plain policy gradient -A * grad(logp).
    logp1 = torch.zeros(2, requires_grad=True)
    policy.clipped_surrogate(logp1, torch.zeros(2), torch.tensor([2.0, -3.0]), 0.2).sum().backward()
    assert logp1.grad.tolist() == [-2.0, 3.0]


# --- token-level rewards reach exactly the erroring line -------------------------------------------------------

def _one_update(model, tokenizer, rollout, mode):
    cfg = rl.RLConfig(reward=mode, num_generations=len(rollout), beta=0.0, temperature=1.0)
    scored = rollouts.reward_rollout(rollout, mode, timeout=5.0)
    mask = rollout.batch["completion_mask"]
    adv = policy.token_advantages(policy.group_advantages(scored.rewards, cfg.num_generations), scored.line_penalties, mask)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    before = policy.token_logprobs(model, rollout.batch, 1.0)[0].detach()
    lp = loop.Loop(cfg, "rl", cpu=True)   # a loop holding just the model and optimizer, as a trainer's would
    lp.model, lp.optimizer, lp.tokenizer = model, optimizer, tokenizer
    actors = rl.Actors(cfg, None, model, sampling.token_pieces(tokenizer), collections.deque(), random.Random(0))
    rl.policy_update(lp, actors, rollout.batch, adv)
    after = policy.token_logprobs(model, rollout.batch, 1.0)[0].detach()
    return scored, (after - before)[0]


def test_a_fine_update_pushes_probability_away_from_exactly_the_erroring_line(add_one_rollout):
    from labkit import models
    model, tokenizer = models.load(models.ModelConfig(size="tiny"), seed=0)
    BODY = add_one_rollout.line_error
    rollout = add_one_rollout(tokenizer, [BODY] * 4)
    scored, delta = _one_update(model, tokenizer, rollout, "fine")
    verdict = scored.verdicts[0]
    assert (verdict.status, verdict.error_type) == ("runtime_error", "NameError")
    starts = [s for s, _ in rollout.offsets[0]]
    third = BODY.index("    return")
    on_line = torch.tensor([third <= s < len(BODY) for s in starts])
    assert scored.line_penalties[0].tolist() == pytest.approx([-0.3 if x else 0.0 for x in on_line.tolist()])
    # Every sample of the group got the same (coarse) reward: only the line penalty is left to learn from.
    assert scored.rewards.tolist() == pytest.approx([-0.6] * 4)
    assert (delta[on_line] < 0).all(), delta
    # Elsewhere the same token ids (e.g. the indentation) fall too, through the shared weights; every other
    # token barely moves.
    ids = rollout.batch["completion_ids"][0]
    elsewhere = ~on_line & ~torch.isin(ids, ids[on_line])
    assert elsewhere.sum() >= 5
    assert delta[on_line].mean() < -5 * delta[elsewhere].abs().mean(), delta


def test_a_per_completion_reward_gives_that_group_nothing_to_learn(add_one_rollout):
    from labkit import models
    model, tokenizer = models.load(models.ModelConfig(size="tiny"), seed=0)
    _, delta = _one_update(model, tokenizer, add_one_rollout(tokenizer, [add_one_rollout.line_error] * 4), "coarse")
    assert delta.abs().max() == 0


# --- smoke runs -------------------------------------------------------------------------------------------------

def _smoke(tmp_path, **overrides):
    from labkit import config
    cfg = config.resolve(rl.RLConfig, "smoke", {"out_dir": str(tmp_path / "rl"), **overrides})
    seen = []
    run = rl.train(cfg, callbacks=[seen.append])
    metrics = run.metrics()
    assert metrics and [r for batch in seen for r in batch] == metrics
    assert all({"step", "epoch", "tokens", "wall_time", "split", "metric", "value"} <= r.keys() for r in metrics)
    per_step = {(r["step"], r["metric"]) for r in metrics if r["split"] == rollouts.ROLLOUT}
    kl = ("kl",) if cfg.beta > 0 else ()           # beta=0 (the default) builds no reference pass
    clip = ("clip_frac",) if cfg.algorithm == "grpo" else ()   # the second pass over a batch (grpo)
    for metric in ("reward_mean", "reward_std", "sample_pass_rate", "entropy", "completion_len", "train_loss",
                   *clip, *kl):
        assert {(s, metric) for s in range(1, cfg.steps + 1)} <= per_step, metric
    assert {(r["step"], r["split"]) for r in metrics if r["metric"] == "pass@1"} == \
        {(s, split) for s in (0, cfg.steps) for split in ("train", "atom_base", "test_in_domain", "test_target")}
    assert run.checkpoint("last").name == f"step-{cfg.steps:06d}"
    _check_rollout_tables(run, cfg, metrics)
    return run, metrics


def _check_rollout_tables(run, cfg, metrics):
    """One rollout file per step (tests/test_rollouts.py: the table itself), read by pandas as it is, holding
    the whole step here and agreeing with the step's logged metrics."""
    import pandas as pd
    from labkit import runs
    assert runs.rollout_steps(run.path) == list(range(1, cfg.steps + 1))
    df = runs.read_rollouts(run.path)
    columns = set(pd.read_json(runs.rollout_path(run.path, 1), lines=True).columns)
    assert columns == set(df.columns) >= {"step", "task_id", "completion", "reward", "status", "error_type",
                                          "error_line", "truncated", "penalty_line", "penalty_start", "penalty_end"}
    per_step = cfg.prompts_per_step * cfg.num_generations
    assert per_step <= cfg.rollout_rows and df.groupby("step").size().tolist() == [per_step] * cfg.steps
    logged = {(r["step"], r["metric"]): r["value"] for r in metrics if r["split"] == rollouts.ROLLOUT}
    for step, rows in df.groupby("step"):
        assert logged[(step, "sample_pass_rate")] == (rows.status == "pass").mean()   # the binary metric
        assert logged[(step, "reward_mean")] == pytest.approx(rows.reward.mean(), abs=1e-5)
    penalised = df.penalty_line.notna()
    assert not (penalised & (df.error_class != "line")).any()   # `fine` penalises line errors only
    if cfg.reward == "fine" and (df.error_class == "line").any():
        assert penalised.any()
    elif cfg.reward != "fine":
        assert not penalised.any()


def test_smoke_from_the_base_model(tiny_model_dir, smoke_data, tmp_path):
    # A random model never passes: the binary reward would give it nothing; the fine one tells errors apart.
    run, metrics = _smoke(tmp_path, **{"model.name_or_path": tiny_model_dir, "data_dir": smoke_data,
                                       "prompts": "atom_base,train_A", "reward": "fine", "beta": 0.05})
    kl = [r["value"] for r in metrics if r["metric"] == "kl"]
    assert kl[0] == pytest.approx(0, abs=1e-6) and kl[-1] > 0   # the policy moves away from its init


@pytest.fixture(scope="module")
def sft_run(tiny_model_dir, smoke_data, tmp_path_factory):
    from labkit import config, sft
    out = tmp_path_factory.mktemp("sft") / "run"
    sft.train(config.resolve(sft.SFTConfig, "smoke", {"model.name_or_path": tiny_model_dir, "data_dir": smoke_data,
                                                      "out_dir": str(out)}))
    return out


def test_smoke_from_an_sft_checkpoint_starts_where_sft_ended(sft_run, tmp_path):
    from labkit import runs
    # The whole SFT mixture as the pool (no subset, nothing left out), so "train" is SFT's own sample.
    run, metrics = _smoke(tmp_path, init=str(sft_run), algorithm="rltf", max_prompts=0, fit_prompts=False)
    # Same prompts (the SFT mixture), same eval sample: RL's step-0 evaluation is SFT's last one, so the
    # init checkpoint was loaded as trained (teacher-forced loss and greedy pass@1 are deterministic).
    sft_metrics = runs.read_jsonl(sft_run / "metrics.jsonl")
    last = max(r["step"] for r in sft_metrics)
    for split in ("train", "atom_base", "test_in_domain", "test_target"):
        for metric in ("loss", "pass@1"):
            want = [r["value"] for r in sft_metrics if (r["step"], r["split"], r["metric"]) == (last, split, metric)]
            got = [r["value"] for r in metrics if (r["step"], r["split"], r["metric"]) == (0, split, metric)]
            assert got == pytest.approx(want, abs=1e-5), (split, metric)
    assert any(r["metric"] == "buffer" for r in metrics)


def test_bad_prompts_are_a_clear_error(tiny_model_dir, smoke_data, tmp_path):
    from labkit import cli
    base = ["rl", "--preset", "smoke", "--set", f"model.name_or_path={tiny_model_dir}", "--data", smoke_data,
            "--out", str(tmp_path / "x")]
    assert cli.main(base) == 2                                    # prompts=sft needs an SFT run as init
    assert cli.main([*base, "--set", "prompts=test_target"]) == 2  # test splits are for evaluation only


def test_runs_under_accelerate_launch_with_two_processes(tiny_model_dir, smoke_data, tmp_path, stage_env):
    """Each process samples and scores its share of the prompts; the main one logs every step once."""
    import subprocess
    import sys
    from labkit import runs
    out = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                           "-m", "labkit", "rl", "--preset", "smoke", "--set", f"model.name_or_path={tiny_model_dir}",
                           "--data", smoke_data, "--set", "prompts=atom_base,train_A", "--set", "steps=2",
                           "--set", "eval.sizes.atom_base=0", "--set", "eval.sizes.test_target=0",
                           "--out", str(out)], env=stage_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    keys = [(r["step"], r["split"], r["metric"]) for r in runs.read_jsonl(out / "metrics.jsonl")]
    assert len(keys) == len(set(keys))
    assert {(s, "rl", m) for s in (1, 2) for m in ("reward_mean", "completion_len", "sample_pass_rate")} <= set(keys)
    assert {(s, "test_in_domain", "pass@1") for s in (0, 2)} <= set(keys)
    # The rollout table of a step holds both processes' samples (4 prompts x 4 samples), written once.
    table = runs.read_rollouts(out)
    assert table.groupby("step").size().to_dict() == {1: 16, 2: 16}
    logged = {(r["step"], r["metric"]): r["value"] for r in runs.read_jsonl(out / "metrics.jsonl")
              if r["split"] == rollouts.ROLLOUT}
    for step, rows in table.groupby("step"):
        assert logged[(step, "sample_pass_rate")] == (rows.status == "pass").mean()
