"""RL's algorithm options (TRL's names): each changes the update the way its definition says; bad values are
clear errors. The GRPO math itself: tests/test_rl.py."""
import json

import pytest
import torch

from labkit import cli, config, policy, prompts, rl, rollouts
from labkit.config import UserError


def test_scale_rewards_none_leaves_reward_minus_the_group_mean():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    adv = policy.group_advantages(rewards, 4, scale="none").view(2, 4)
    assert adv.tolist() == [[0.75, -0.25, -0.25, -0.25], [0.5, 0.5, -0.5, -0.5]]
    by_group = policy.group_advantages(rewards, 4, scale="group").view(2, 4)
    assert by_group[0, 0] == pytest.approx(0.75 / 0.5, abs=1e-3)          # divided by the group's std
    by_batch = policy.group_advantages(rewards, 4, scale="batch").view(2, 4)
    assert by_batch[1, 0] == pytest.approx(0.5 / rewards.std().item(), abs=1e-3)   # by the batch's


def test_epsilon_high_bounds_the_ratio_above_at_one_plus_epsilon_high():
    old = torch.zeros(3)
    # ratios 1.25, 1.35 and 0.75, all with positive advantage
    logp = torch.log(torch.tensor([1.25, 1.35, 0.75])).requires_grad_()
    policy.clipped_surrogate(logp, old, torch.ones(3), epsilon=0.2, epsilon_high=0.28).sum().backward()
    assert logp.grad[0] < 0          # 1.25 < 1 + 0.28: still pushed up (with epsilon alone it would be clipped)
    assert logp.grad[1] == 0         # 1.35 > 1.28: clipped, no more push
    assert logp.grad[2] < 0          # below: a positive advantage always pushes
    plain = logp.detach().clone().requires_grad_()
    policy.clipped_surrogate(plain, old, torch.ones(3), epsilon=0.2).sum().backward()
    assert plain.grad[0] == 0        # without epsilon_high the upper bound is 1 + epsilon


def test_loss_types_weigh_tokens_as_defined():
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    n_tokens, n = mask.sum(), torch.tensor(2.0)
    grpo = policy.token_weights(mask, "grpo", n_tokens, n, max_new_tokens=8)
    assert grpo.sum(1).tolist() == [0.5, 0.5]                            # each completion counts the same
    assert policy.token_weights(mask, "dapo", n_tokens, n, 8).tolist() == (mask / 5).tolist()   # each token
    assert policy.token_weights(mask, "dr_grpo", n_tokens, n, 8).tolist() == (mask / 16).tolist()


def test_varied_groups_and_select_groups_keep_exactly_the_groups_that_can_teach(tokenizer):
    from labkit.tasks import Task
    task = Task("t", "train_A", "def f(x):\n", "f", "    return x\n", [], [], 1)

    def rollout(n_rows, width, rewards):
        ids, mask = torch.full((n_rows, width), 5), torch.ones(n_rows, width, dtype=torch.long)
        batch = dict(prompt_ids=ids[:, :2], prompt_mask=mask[:, :2], completion_ids=ids, completion_mask=mask)
        r = rollouts.Rollout([task] * n_rows, batch, ["x"] * n_rows, ["x"] * n_rows, [[(0, 1)]] * n_rows,
                             [False] * n_rows)
        return r, rollouts.Scored([None] * n_rows, torch.tensor(rewards), torch.zeros(n_rows, width))

    a = rollout(4, 3, [1.0, 1.0, 0.0, 1.0])   # groups of 2: (1, 1) equal, (0, 1) varied
    b = rollout(4, 5, [0.0, 1.0, 0.0, 0.0])
    assert policy.varied_groups(a[1].rewards, 2) == [1] and policy.varied_groups(b[1].rewards, 2) == [0]
    merged, scored = rollouts.select_groups([(*a, [1]), (*b, [0])], 2, pad_id=0)
    assert scored.rewards.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert merged.batch["completion_ids"].shape == (4, 5) and merged.batch["completion_mask"][:2, 3:].sum() == 0
    assert policy.varied_groups(scored.rewards, 2) == [0, 1]


def _cfg(tmp_path, **overrides):
    return config.resolve(rl.RLConfig, "smoke", {"out_dir": str(tmp_path / "rl"), "eval.sizes": {}, **overrides})


def test_dynamic_sampling_updates_only_on_groups_whose_rewards_differ(tiny_model_dir, smoke_data, tmp_path,
                                                                     monkeypatch):
    seen = []
    update = rl.grpo_update

    def recording(lp, actors, rollout, scored):
        seen.append(scored.rewards.view(-1, actors.cfg.num_generations))
        return update(lp, actors, rollout, scored)

    monkeypatch.setattr(rl, "grpo_update", recording)
    cfg = _cfg(tmp_path, **{"model.name_or_path": tiny_model_dir, "data_dir": smoke_data, "prompts": "atom_base",
                            "reward": "fine", "dynamic_sampling": True, "max_resample": 3, "steps": 3})
    run = rl.train(cfg)
    assert seen and all((groups.std(1) > 0).all() for groups in seen)
    logged = {r["metric"] for r in run.metrics() if r["split"] == "rl"}
    assert {"dynamic/groups_kept", "dynamic/rounds"} <= logged


def test_beta_zero_builds_no_reference_pass(tiny_model_dir, smoke_data, tmp_path, monkeypatch):
    def no_reference(*a, **k):
        raise AssertionError("the reference policy was used with beta=0")

    monkeypatch.setattr(rl, "reference_of", no_reference)
    cfg = _cfg(tmp_path, **{"model.name_or_path": tiny_model_dir, "data_dir": smoke_data, "prompts": "atom_base",
                            "reward": "fine", "beta": 0.0, "steps": 2, "num_iterations": 2})
    metrics = rl.train(cfg).metrics()
    assert not any(r["metric"] == "kl" for r in metrics)
    assert any(r["metric"] == "clip_frac" for r in metrics)   # a second pass on the batch: the clip can act


def test_masked_truncated_completions_give_no_gradient(tiny_llama, tokenizer):
    from collections import deque
    from random import Random

    from labkit import loop, sampling
    from labkit.tasks import Task
    model, tok = tiny_llama
    task = Task("t", "train_A", "def f(x):\n", "f", "    return x\n", [{"args": [1], "expected": 1}], [], 1)
    rollout = rollouts.sample(model, tok, sampling.token_pieces(tok), [task], 4, temperature=1.0, top_p=1.0,
                              max_new_tokens=3)
    rollout.truncated = [True] * 4
    cfg = rl.RLConfig(num_generations=4, beta=0.0, mask_truncated_completions=True)
    lp = loop.Loop(cfg, "rl", cpu=True)
    lp.model, lp.tokenizer = model, tok
    lp.optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    scored = rollouts.Scored([None] * 4, torch.tensor([1.0, 0.0, 0.0, 0.0]),
                             torch.zeros(rollout.batch["completion_mask"].shape))
    rl.grpo_update(lp, rl.Actors(cfg, None, model, [], deque(), Random(0)), rollout, scored)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_edge_filter_keeps_prompts_solved_sometimes_and_records_them(tiny_model_dir, smoke_data, tmp_path,
                                                                         monkeypatch):
    # A random tiny model solves nothing: stand in a policy that passes every other sample of half the prompts.
    def fake_reward(rollout, mode, timeout):
        ids = [t.id for t in rollout.tasks]
        passed = [i % 2 == 0 and int(ids[i].split("/")[1]) % 2 == 0 for i in range(len(ids))]
        verdicts = [type("V", (), {"status": "pass" if p else "fail"})() for p in passed]
        return rollouts.Scored(verdicts, torch.tensor([float(p) for p in passed]), torch.zeros(len(ids), 1))

    monkeypatch.setattr(prompts, "reward_rollout", fake_reward)
    cfg = _cfg(tmp_path, **{"model.name_or_path": tiny_model_dir, "data_dir": smoke_data, "prompts": "atom_base",
                            "prompt_filter": "edge", "steps": 1})
    rl.train(cfg)
    record = json.loads((tmp_path / "rl" / rl.FILTER_FILE).read_text())
    assert record["kept"] > 0 and record["kept"] + record["always"] + record["never"] == len(record["rates"])
    assert all(rate == 0.5 for id_, rate in record["rates"].items() if int(id_.split("/")[1]) % 2 == 0)


def test_old_option_names_are_aliases():
    cfg = config.resolve(rl.RLConfig, None, {"group_size": "4", "kl_coef": "0", "clip_eps": "0.3",
                                             "inner_updates": "2"})
    assert (cfg.num_generations, cfg.beta, cfg.epsilon, cfg.num_iterations) == (4, 0.0, 0.3, 2)
    assert "group_size" not in config.to_dict(cfg)


@pytest.mark.parametrize("overrides, match", [
    ({"epsilon_high": "0.1"}, "epsilon_high=0.1 is below epsilon"),
    ({"loss_type": "sum"}, "loss_type"),
    ({"dynamic_sampling": "true", "num_generations": "1", "algorithm": "rltf"}, "num_generations >= 2"),
])
def test_bad_options_exit_2_naming_the_key(overrides, match, tiny_model_dir, smoke_data, tmp_path, capsys):
    args = ["rl", "--preset", "smoke", "--set", f"model.name_or_path={tiny_model_dir}", "--data", smoke_data,
            "--set", "prompts=atom_base", "--out", str(tmp_path / "rl")]
    assert cli.main([*args, *(a for k, v in overrides.items() for a in ("--set", f"{k}={v}"))]) == 2
    assert match in capsys.readouterr().err


def test_an_edge_filter_that_keeps_nothing_is_a_clear_error(tiny_model_dir, smoke_data, tmp_path):
    # A random tiny model solves no prompt in any sample.
    with pytest.raises(UserError, match="prompt_filter=edge keeps no prompt"):
        rl.train(_cfg(tmp_path, **{"model.name_or_path": tiny_model_dir, "data_dir": smoke_data,
                                   "prompts": "atom_base", "prompt_filter": "edge"}))
    assert not (tmp_path / "rl" / "metrics.jsonl").exists()


def test_fit_pool_takes_a_fixed_subset_and_leaves_out_prompts_that_cannot_fit(tokenizer):
    from labkit import atomic, tasks
    pool = tasks.atom_base(atomic.library(0))[:120]
    long = [t for t in pool if len(tokenizer(t.solution, add_special_tokens=False)["input_ids"]) >= 40]
    assert long   # the smoke preset's max_new_tokens=40 cannot hold these bodies
    cfg = config.resolve(rl.RLConfig, "smoke", {"fit_prompts": True, "max_prompts": 50})
    fitted, counts = prompts.fit_pool(pool, cfg, tokenizer)
    assert counts == {"too_long": len(long), "pool": 50} and not set(map(id, fitted)) & set(map(id, long))
    assert fitted == prompts.fit_pool(pool, cfg, tokenizer)[0]            # the same subset every time
    whole = config.resolve(rl.RLConfig, "smoke", {"fit_prompts": False, "max_prompts": 0})
    everything, counts = prompts.fit_pool(pool, whole, tokenizer)
    assert everything == pool and counts == {"too_long": 0, "pool": 120}  # neither: the whole pool


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_length_sorted_chunks_take_the_same_step_as_the_whole_batch(tiny_llama, loss_type):
    """micro_batch only changes how the batch is cut (rows sorted by length, each chunk trimmed to its own
    widths), never the update: the same SGD step with one chunk, chunks of 3 and of 16, up to float order."""
    import copy
    from collections import deque
    from random import Random

    from labkit import loop, sampling
    from labkit.tasks import Task
    model, tok = tiny_llama
    task_list = [Task(f"t{i}", "train_A", "def f(x):\n" + "    # pad\n" * i, "f", "    return x\n",
                      [{"args": [1], "expected": 1}], [], 1) for i in range(3)]
    torch.manual_seed(0)
    rollout = rollouts.sample(model, tok, sampling.token_pieces(tok), task_list, 4, temperature=1.0, top_p=1.0,
                              max_new_tokens=12)
    mask = rollout.batch["completion_mask"]
    assert len(set(mask.sum(1).tolist())) > 1   # completions of different lengths: chunks trim differently
    advantages = torch.randn(mask.shape) * mask
    steps = []
    for size in (0, 3, 16):
        trained = copy.deepcopy(model)
        cfg = rl.RLConfig(num_generations=4, beta=0.1, num_iterations=2, loss_type=loss_type, micro_batch=size)
        lp = loop.Loop(cfg, "rl", cpu=True)
        lp.model, lp.tokenizer = trained, tok
        lp.optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
        stats = rl.policy_update(lp, rl.Actors(cfg, copy.deepcopy(model), trained, [], deque(), Random(0)),
                                 rollout.batch, advantages)
        steps.append(([p.detach() - q.detach() for p, q in zip(trained.parameters(), model.parameters())], stats))
    (whole, whole_stats), *others = steps
    assert any(d.abs().max() > 1e-4 for d in whole)   # the update moved the weights
    for deltas, stats in others:
        assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(whole, deltas))
        assert stats.keys() == whole_stats.keys()
        assert all(stats[k] == pytest.approx(whole_stats[k], rel=1e-4, abs=1e-6) for k in stats)
