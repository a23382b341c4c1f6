"""RL's samples as the trainer needs them: sampled completions of a step (`Rollout`), their sandbox verdicts
turned into rewards per completion and per token (`Scored`), RLTF's buffer layout, the per-step sample
statistics logged to the split "rl", and the rollout table of each step (a row per completion: what was
sampled, its reward and verdict), written to the run directory's `rollouts/`.

    rollout = sample(model, tokenizer, pieces, tasks, n=8, temperature=1.0, top_p=1.0, max_new_tokens=64)
    scored = reward_rollout(rollout, "fine", timeout=1.0)

Sampling is `labkit/sampling.py` (batched, KV cache, each sample stopped at the end of its function);
rewards are `labkit/rewards.py` (the `fine` mode puts its penalty on exactly the tokens of the erroring line).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from labkit import evaluate, rewards, sampling, sandbox, tasks

ROLLOUT = "rl"   # the split of the per-step metrics of the samples RL trains on (evaluations use their own)


@dataclass
class Rollout:
    """Sampled completions as the trainer needs them: `batch` holds the token ids (prompts left-padded,
    completions right-padded, each up to and including the token that ended its function), plus the program
    text of each completion and each kept token's character span in its raw text (for line rewards)."""
    tasks: list                      # the Task of each completion
    batch: dict                      # prompt_ids, prompt_mask [N, Lp]; completion_ids, completion_mask [N, Tc]
    raw: list[str]                   # the decoded kept tokens
    completions: list[str]           # cut by the stop rule: what goes into the program
    offsets: list[list[tuple[int, int]]]
    truncated: list[bool]            # hit max_new_tokens before the function ended

    def __len__(self):
        return len(self.tasks)


def sample(model, tokenizer, pieces: list[str], task_list: list, n: int, *, temperature: float, top_p: float,
           max_new_tokens: int, greedy: bool = False) -> Rollout:
    """`n` completions per task (task i's are rows i*n .. i*n+n-1), sampled as one batch."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    expanded = [t for t in task_list for _ in range(n)]
    prompt_ids, prompt_mask = sampling.encode_prompts(tokenizer, [t.prompt for t in expanded], device)
    stop = sampling.stop_rule(tokenizer, device)
    gen, lengths = sampling.generate(model, prompt_ids, prompt_mask, stop, max_new_tokens=max_new_tokens,
                            temperature=temperature, top_p=top_p, greedy=greedy, pad_id=tokenizer.pad_token_id)
    model.train(was_training)
    truncated = (lengths < 0).tolist()
    lengths = torch.where(lengths < 0, max_new_tokens, lengths).tolist()
    completion_ids = gen[:, :max(lengths)].clone()
    completion_mask = (torch.arange(completion_ids.shape[1], device=device) < torch.tensor(lengths, device=device)
                       .unsqueeze(1)).long()
    completion_ids[completion_mask == 0] = tokenizer.pad_token_id
    raw, offsets = [], []
    for i, k in enumerate(lengths):
        text, spans = _spans(tokenizer, pieces, gen[i, :k].tolist())
        raw.append(text)
        offsets.append(spans)
    batch = dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                 completion_mask=completion_mask)
    return Rollout(expanded, batch, raw, [tasks.cut_completion(r) for r in raw], offsets, truncated)


def _spans(tokenizer, pieces: list[str], ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The text of `ids` and each token's (start, end) in it. Token pieces concatenate exactly for byte-level
    BPE on ASCII text; otherwise (a character split across tokens, sentencepiece spaces) decode growing
    prefixes."""
    text = "".join(pieces[i] for i in ids)
    if text == tokenizer.decode(ids, skip_special_tokens=True):
        ends = list(itertools.accumulate(len(pieces[i]) for i in ids))
    else:
        text = tokenizer.decode(ids, skip_special_tokens=True)
        ends = [len(tokenizer.decode(ids[:j + 1], skip_special_tokens=True)) for j in range(len(ids))]
    return text, list(zip([0] + ends[:-1], ends))


# --- rewards: sandbox verdicts -> a reward per completion and per token ------------------------------------

@dataclass
class Scored:
    verdicts: list
    rewards: torch.Tensor            # [N] the completion's reward: what a group or the baseline compares
    line_penalties: torch.Tensor     # [N, Tc] fine mode: the penalty on the tokens of the erroring line, else 0


def reward_rollout(rollout: Rollout, mode: str, timeout: float) -> Scored:
    """Run every program against its tests in the sandbox and turn the verdicts into rewards.

    As in RLTF, `fine` adds to the coarse reward: the completion's reward is the coarse one, and an error
    pinned to a line (U_line) puts its -0.3 on exactly that line's tokens. Errors without a line (U_global)
    are already in the coarse reward, which reaches every token.
    """
    programs = [tasks.program(t, c) for t, c in zip(rollout.tasks, rollout.completions)]
    verdicts = sandbox.run_many(programs, [tasks.test_snippets(t) for t in rollout.tasks], timeout=timeout)
    scalar = torch.tensor(rewards.scalar_rewards(verdicts, "coarse" if mode == "fine" else mode))
    mask = rollout.batch["completion_mask"]
    penalties = torch.zeros(mask.shape)
    if mode == "fine":
        firsts = [tasks.completion_first_line(t) for t in rollout.tasks]
        per_token = rewards.token_rewards(rollout.raw, verdicts, rollout.offsets, firsts, "fine")
        for i, (v, r) in enumerate(zip(verdicts, per_token)):
            if rewards.error_class(v, rollout.raw[i], firsts[i])[0] == "line":
                penalties[i, :len(r)] = torch.tensor(r)
    return Scored(verdicts, scalar.float().to(mask.device), penalties.to(mask.device))


def select_groups(parts: list[tuple[Rollout, Scored, list[int]]], group_size: int, pad_id: int
                  ) -> tuple[Rollout, Scored]:
    """Chosen groups (indices into each rollout's groups of `group_size` rows) of several rollouts as one
    rollout: prompts left-padded and completions right-padded again to the widest of them."""
    rows = [(r, s, [g * group_size + i for g in groups for i in range(group_size)]) for r, s, groups in parts]
    lp = max(r.batch["prompt_ids"].shape[1] for r, _, _ in rows)
    tc = max(r.batch["completion_ids"].shape[1] for r, _, _ in rows)

    def pad(x, width, value, left=False):
        gap = width - x.shape[1]
        return torch.nn.functional.pad(x, (gap, 0) if left else (0, gap), value=value)

    batch = {key: torch.cat([pad(r.batch[key][idx], lp if key.startswith("prompt") else tc,
                                 pad_id if key.endswith("ids") else 0, left=key.startswith("prompt"))
                             for r, _, idx in rows]) for key in ("prompt_ids", "prompt_mask", "completion_ids",
                                                                  "completion_mask")}

    def pick(attr):
        return [x for r, _, idx in rows for x in (getattr(r, attr)[i] for i in idx)]

    rollout = Rollout(pick("tasks"), batch, pick("raw"), pick("completions"), pick("offsets"), pick("truncated"))
    scored = Scored([s.verdicts[i] for _, s, idx in rows for i in idx],
                    torch.cat([s.rewards[idx] for _, s, idx in rows]),
                    torch.cat([pad(s.line_penalties[idx], tc, 0.0) for _, s, idx in rows]))
    return rollout, scored


# --- RLTF's buffer: plain lists, so the buffer goes into a checkpoint as it is --------------------------------

def collate_experience(items: list[dict], pad_id: int, device) -> tuple[dict, torch.Tensor]:
    """RLTF buffer items (prompt ids, completion ids, token advantages) -> a padded batch + advantages."""
    lp = max(len(x["prompt"]) for x in items)
    tc = max(len(x["completion"]) for x in items)
    batch = dict(prompt_ids=torch.full((len(items), lp), pad_id), prompt_mask=torch.zeros(len(items), lp),
                 completion_ids=torch.full((len(items), tc), pad_id), completion_mask=torch.zeros(len(items), tc))
    advantages = torch.zeros(len(items), tc)
    for i, x in enumerate(items):
        p, c = len(x["prompt"]), len(x["completion"])
        batch["prompt_ids"][i, lp - p:], batch["prompt_mask"][i, lp - p:] = torch.tensor(x["prompt"]), 1
        batch["completion_ids"][i, :c], batch["completion_mask"][i, :c] = torch.tensor(x["completion"]), 1
        advantages[i, :c] = torch.tensor(x["advantages"])
    batch = {k: v.long().to(device) for k, v in batch.items()}
    return batch, advantages.to(device)


def experiences(rollout: Rollout, advantages: torch.Tensor) -> list[dict]:
    """One buffer item per completion: plain lists, so the buffer goes into a checkpoint as it is."""
    b = rollout.batch
    out = []
    for i in range(len(rollout)):
        p, c = b["prompt_mask"][i].bool(), b["completion_mask"][i].bool()
        out.append({"prompt": b["prompt_ids"][i][p].tolist(), "completion": b["completion_ids"][i][c].tolist(),
                    "advantages": advantages[i][c].tolist()})
    return out


# --- the rollout table: a row per sampled completion, written to RUN/rollouts/ ----------------------------------

def rollout_table(rollout: Rollout, scored: Scored) -> list[dict]:
    """One row per completion of a step, in the rollout's order (a prompt's group together):

      task_id, split, sample   the task, its split, the completion's index among that task's samples this step
      completion               the program body that ran (cut by the stop rule)
      tokens, truncated        sampled tokens kept; hit max_new_tokens before the function ended
      reward                   the completion's reward in the run's mode (what a group or the baseline compares)
      status, error_type       the sandbox verdict (status "pass" is the binary task metric)
      error_line               the verdict's error line counted within the completion (1-based), None when the
                               error lies elsewhere (a test, the context) or there is none
      error_class              `rewards.error_class`: pass, line, global or ignore (what `fine` penalises)
      tests_passed, tests_total
      penalty_line, penalty_start, penalty_end, penalty_tokens
                               `fine` only (else None/0): the completion line (1-based) of the tokens that got
                               the line penalty, their character span in `completion`, and how many there were
    """
    mask = rollout.batch["completion_mask"].cpu()
    penalties = scored.line_penalties.cpu()
    rewards_ = scored.rewards.tolist()
    seen: dict[str, int] = {}
    rows = []
    for i, (task, verdict) in enumerate(zip(rollout.tasks, scored.verdicts)):
        completion, raw = rollout.completions[i], rollout.raw[i]
        first = tasks.completion_first_line(task)
        n_lines = len(completion.splitlines())
        line = verdict.error_line - first if verdict.error_line else None
        spans = [span for span, p in zip(rollout.offsets[i], penalties[i].tolist()) if p != 0]
        start, end = (min(a for a, _ in spans), max(b for _, b in spans)) if spans else (None, None)
        rows.append({
            "task_id": task.id, "split": task.split, "sample": seen.setdefault(task.id, 0),
            "completion": completion, "tokens": int(mask[i].sum()), "truncated": bool(rollout.truncated[i]),
            "reward": float(rewards_[i]), "status": verdict.status, "error_type": verdict.error_type,
            "error_line": line + 1 if line is not None and 0 <= line < n_lines else None,
            "error_class": rewards.error_class(verdict, raw, first)[0],
            "tests_passed": verdict.tests_passed, "tests_total": verdict.tests_total,
            "penalty_line": raw[:start].count("\n") + 1 if spans else None,
            "penalty_start": min(start, len(completion)) if spans else None,
            "penalty_end": min(end, len(completion)) if spans else None,
            "penalty_tokens": len(spans)})
        seen[task.id] += 1
    return rows


def save_rollouts(run_dir, step: int, rollout: Rollout, scored: Scored, limit: int, accelerator) -> None:
    """The first `limit` rows (whole groups first) of a step's rollout table, gathered from every process, to
    `run_dir` (`RunDir.write_rollouts`) on the main process; `limit` 0 writes nothing. Called on every
    process (a data-parallel step's samples are spread over them)."""
    if limit <= 0:
        return
    rows = rollout_table(rollout, scored)
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object
        rows = gather_object(rows)
    if accelerator.is_main_process:
        run_dir.write_rollouts(step, rows[:limit])


# --- what is logged per step ------------------------------------------------------------------------------

def rollout_records(rollout: Rollout, scored: Scored, accelerator) -> list[dict]:
    """Per-step sample statistics over all processes: reward mean and spread, pass rate, completion length,
    and the share of each verdict status and runtime error type (named as in `evaluate.metrics`).

    `sample_pass_rate` is the reward-integrity metric: the share of the step's samples whose verdict status is
    "pass" (every test passed, compared as canonical JSON by `tasks.test_snippets`, with the harness's
    completion token), i.e. the binary task metric, whatever the reward mode. It never reads `scored.rewards`,
    so a shaped reward (coarse, adaptive, fine, pass_ratio) that rises while it falls is reward hacking."""
    from accelerate.utils import gather_object
    mask = rollout.batch["completion_mask"]
    rows = gather_object([(r, v.status, v.error_type, n, t) for r, v, n, t in zip(
        scored.rewards.tolist(), scored.verdicts, mask.sum(1).tolist(), rollout.truncated)])
    rewards_ = torch.tensor([r[0] for r in rows])
    out = {"reward_mean": rewards_.mean().item(), "reward_std": rewards_.std().item() if len(rows) > 1 else 0.0,
           "sample_pass_rate": sum(r[1] == "pass" for r in rows) / len(rows),
           "completion_len": sum(r[3] for r in rows) / len(rows),
           "truncated_rate": sum(r[4] for r in rows) / len(rows)}
    out.update(evaluate.outcome_shares([(r[1], r[2]) for r in rows]))
    return [{"split": ROLLOUT, "metric": m, "value": float(v)} for m, v in out.items()]
