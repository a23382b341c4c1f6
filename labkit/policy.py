"""The policy-gradient math of RL (`labkit/rl.py`), as pure functions of tensors: advantages, the clipped
surrogate, the KL estimate, how token losses become a batch loss, and the policy's log-probabilities.

The option names follow TRL's GRPOConfig (`scale_rewards`, `epsilon`/`epsilon_high`, `loss_type`), so a
reader of TRL's or DAPO's papers finds the same knobs with the same meaning.
"""
from __future__ import annotations

import contextlib

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """GRPO: each reward minus its group's mean, divided by the group's standard deviation (scale "group"), the
    whole batch's ("batch") or by nothing ("none", Dr. GRPO). A group whose samples all got the same reward
    teaches nothing (advantage 0): RL on prompts SFT has memorised (DESIGN §2.3)."""
    r = rewards.view(-1, group_size)
    centred = r - r.mean(1, keepdim=True)
    if scale == "group":
        return (centred / (r.std(1, keepdim=True) + eps)).view(-1)
    if scale == "batch":
        return (centred / (rewards.std() + eps)).view(-1)
    return centred.view(-1)


def varied_groups(rewards: torch.Tensor, group_size: int) -> list[int]:
    """The groups whose rewards are not all equal: the only ones a group-relative advantage can learn from."""
    return [g for g, std in enumerate(rewards.view(-1, group_size).std(1).tolist()) if std > 0]


def token_advantages(seq_advantages: torch.Tensor, line_penalties: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, Tc]: each completion's advantage on all its tokens, plus the fine mode's line penalties on exactly
    the tokens of the erroring line. Token-level credit: a sample with one bad line is not blamed evenly."""
    return (seq_advantages.unsqueeze(1) + line_penalties) * mask


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(policy || reference) estimate from the sampled tokens (Schulman's k3): exp(d) - d - 1 with
    d = ref - policy. Unbiased, never negative, lower variance than -d."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def clipped_surrogate(logp, old_logp, advantages, epsilon: float, epsilon_high: float | None = None) -> torch.Tensor:
    """PPO-clip per token, to minimise: -min(ratio * A, clip(ratio, 1 - epsilon, 1 + epsilon_high) * A).
    A ratio past the bound in the direction its advantage pushes gets no gradient: the trust region."""
    ratio = torch.exp(logp - old_logp)
    return -torch.min(ratio * advantages, ratio.clamp(*ratio_bounds(epsilon, epsilon_high)) * advantages)


def ratio_bounds(epsilon: float, epsilon_high: float | None = None) -> tuple[float, float]:
    """The trust region of the probability ratio: [1 - epsilon, 1 + epsilon_high] (epsilon_high None: epsilon)."""
    return 1 - epsilon, 1 + (epsilon if epsilon_high is None else epsilon_high)


def token_weights(mask: torch.Tensor, loss_type: str, n_tokens: torch.Tensor, n_completions: torch.Tensor,
                  max_new_tokens: int) -> torch.Tensor:
    """[N, Tc] weights that turn token losses into the batch loss (their weighted sum), per `loss_type`, with
    the global counts (`n_tokens`, `n_completions` over every process), so data-parallel gradients averaged over
    processes equal the one-process gradient."""
    if loss_type == "grpo":   # each completion's token mean, then the mean over completions
        return mask / mask.sum(1, keepdim=True).clamp(min=1) / n_completions
    if loss_type == "dr_grpo":
        return mask / (n_completions * max_new_tokens)
    return mask / n_tokens     # dapo


def token_logprobs(model, batch: dict, temperature: float, with_entropy: bool = False):
    """Log-probability of each completion token at the sampling temperature ([N, Tc]) and, when asked, the
    policy's entropy per token. Only the completion positions go through the output layer."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    positions = (mask.cumsum(1) - 1).clamp(min=0)   # as `generate` numbers left-padded prompts
    tc = batch["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                   logits_to_keep=tc + 1).logits[:, :-1].float() / temperature
    norm = logits.logsumexp(-1)
    logp = logits.gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1) - norm
    if not with_entropy:
        return logp, None
    with torch.no_grad():
        entropy = norm - (logits.softmax(-1) * logits).sum(-1)
    return logp, entropy


def length_chunks(batch: dict, size: int) -> list[tuple[torch.Tensor, dict]]:
    """A prompt + completion batch as chunks of at most `size` rows (0: one chunk) of similar length, each
    trimmed to its own longest prompt (left padding) and completion (right padding): [(row indices, chunk)].
    The rows' tokens and positions are unchanged, so the chunks' summed losses are the batch's loss."""
    prompt_len, completion_len = batch["prompt_mask"].sum(1), batch["completion_mask"].sum(1)
    order = torch.argsort(prompt_len + completion_len, stable=True)
    step = size or len(order)
    out = []
    for start in range(0, len(order), step):
        rows = order[start:start + step]
        pw, cw = max(int(prompt_len[rows].max()), 1), int(completion_len[rows].max())
        out.append((rows, {k: v[rows][:, -pw:] if k.startswith("prompt") else v[rows][:, :cw]
                           for k, v in batch.items()}))
    return out


@contextlib.contextmanager
def reference_of(model, frozen):
    """The reference policy: a frozen copy of the init, or, with LoRA, the model itself with its adapter
    disabled (the init's weights are exactly the base under the adapter: no second copy in memory)."""
    if frozen is not None:
        yield frozen
    else:
        with model.disable_adapter():
            yield model
