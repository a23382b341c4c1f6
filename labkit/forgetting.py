"""What a fine-tuning run loses on what it never trained on, and how far it moved from where it started: the two
measures of forgetting (finding F3b, DESIGN §2.1), taken at every evaluation of SFT and RL alike.

- `general/loss`: next-token loss on held-out standard-library code (the pretraining corpus's held-out
  functions: neither SFT nor RL ever trains on them). Its rise from step 0 is what the run forgot.
- `train/kl_to_init`: KL(policy || the run's starting model) on the run's own training prompts, estimated from
  one completion per prompt that the policy samples at temperature 1 (the Monte Carlo estimate: the mean over
  completions of the summed per-token log-ratio). "RL's Razor" (arXiv 2509.04259) found that this KL predicts
  forgetting, and that RL, which samples its own targets, moves less than SFT for the same gain.

`measure` builds it once per run in the trainer, before a resumed run loads its later weights (it holds a frozen
copy of the start); the evaluator (`loop.task_evaluator`) calls it. The evaluation settings `eval.general_blocks`
and `eval.kl_prompts` switch each measure on (0: off, the default).
"""
from __future__ import annotations

import copy

import torch

from labkit import batches, models, rollouts, sampling
from labkit.policy import token_logprobs

SEQ_LEN = 256   # tokens per block of held-out text, as the base model was pretrained


def heldout_documents(max_chars: int = models.STDLIB_CHARS) -> list[str]:
    """The standard-library functions the base's pretraining held out (same corpus, same every-Nth rule), those
    among the corpus's first `max_chars` characters: the corpus is one fixed sequence, so a smaller budget gives
    the first documents of the same held-out set, at a fraction of the parsing time."""
    return models.stdlib_documents(max_chars)[::models.HELDOUT_EVERY]


def heldout_blocks(tokenizer, n_blocks: int) -> torch.Tensor:
    """The first `n_blocks` blocks of SEQ_LEN tokens of the held-out documents joined with eos (fixed: no RNG)."""
    # Code is 3-4 characters a token: a budget of 8 a token parses more than enough of the corpus.
    docs = heldout_documents(min(models.STDLIB_CHARS, n_blocks * SEQ_LEN * models.HELDOUT_EVERY * 8))
    flat: list[int] = []
    for doc in docs:
        flat += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(flat) >= n_blocks * SEQ_LEN:
            break
    n = min(n_blocks, len(flat) // SEQ_LEN)
    return torch.tensor(flat[:n * SEQ_LEN]).view(n, SEQ_LEN)


class Forgetting:
    """Measures a model against a frozen copy of the start it was trained from (see the module docstring)."""

    def __init__(self, start_model, tokenizer, *, general_blocks: int, kl_prompts: int, max_new_tokens: int):
        self.tokenizer, self.kl_prompts, self.max_new_tokens = tokenizer, kl_prompts, max_new_tokens
        self.blocks = heldout_blocks(tokenizer, general_blocks) if general_blocks else None
        self.start = copy.deepcopy(start_model).eval().requires_grad_(False) if kl_prompts else None
        self.pieces = sampling.token_pieces(tokenizer) if kl_prompts else []

    @torch.no_grad()
    def __call__(self, model, train_tasks: list) -> list[dict]:
        """Metric lines of one evaluation; the KL on the first `kl_prompts` of `train_tasks` (the caller forks the
        RNG, so the sampling here shifts no training stream)."""
        records = []
        if self.blocks is not None:
            records.append({"split": "general", "metric": "loss", "value": batches.block_loss(model, self.blocks, 8)})
        if self.start is not None and train_tasks:
            rollout = rollouts.sample(model, self.tokenizer, self.pieces, train_tasks[:self.kl_prompts], 1,
                                      temperature=1.0, top_p=1.0, max_new_tokens=self.max_new_tokens)
            mask = rollout.batch["completion_mask"].float()
            logp, _ = token_logprobs(model, rollout.batch, 1.0)
            start_logp, _ = token_logprobs(self.start, rollout.batch, 1.0)
            records.append({"split": "train", "metric": "kl_to_init",
                            "value": ((logp - start_logp) * mask).sum(1).mean().item()})
        return records


def measure(cfg, start_model, tokenizer) -> Forgetting | None:
    """The forgetting measures an evaluation schedule asks for (`eval.general_blocks`, `eval.kl_prompts`), taken
    against `start_model` as it is now: call this before a resumed run loads its later weights."""
    if not (cfg.general_blocks or cfg.kl_prompts):
        return None
    return Forgetting(start_model, tokenizer, general_blocks=cfg.general_blocks, kl_prompts=cfg.kl_prompts,
                      max_new_tokens=cfg.max_new_tokens)
