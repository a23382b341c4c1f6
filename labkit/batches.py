"""Prompt + completion examples as token ids: how SFT trains on a task and how an evaluation scores its
reference solution (the held-out loss of a split), so both see exactly the same tokens; and the loss of plain
text blocks (pretraining's held-out loss, `labkit.forgetting`'s held-out standard-library loss).

    ids, labels = encode(tokenizer, task.prompt, task.solution)   # prompt labels masked with -100
    batch = collate([(ids, labels), ...], tokenizer.pad_token_id)
    loss_sum, n_labels = token_losses(model, batch)
    reference_loss(model, tokenizer, tasks)                      # per-token loss of the reference bodies
    block_loss(model, blocks, batch_size)                        # mean loss of plain text blocks [n, seq_len]
"""
from __future__ import annotations

import torch


def encode(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for prompt + completion + eos, with the prompt's labels masked (-100).

    Prompt and completion are tokenised separately, as at generation time (the model is given the prompt's
    tokens and continues): tokenising the joined text could merge "\\n" + "    " across the boundary into a
    token the model never sees at inference.
    """
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p + c, [-100] * len(p) + c


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest example; padding is masked by attention_mask and labels, never by id."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)], labels[i, :len(y)], mask[i, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# Causal LMs whose logits are their output layer applied to the decoder's last hidden state, nothing more (no
# soft-capping or scaling of the logits, as some other families apply): for these the output layer can be
# applied to the labelled positions alone.
PLAIN_HEADS = ("LlamaForCausalLM",)


def token_losses(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of next-token cross-entropy over labelled tokens, number of labelled tokens).

    Only labelled positions go through the output layer: with the loss on completions, the prompts' logits (and
    the padding's) would be computed and thrown away. A model of `PLAIN_HEADS` gets the output layer on exactly
    the labelled positions; any other model on the positions from the batch's first labelled token on
    (`logits_to_keep`). A right-padded batch (`collate`'s) goes in without its attention mask: causal attention
    already keeps padding at the end of a row out of every real token's view, and without a mask SDPA takes its
    faster causal path (same losses)."""
    labels, mask = batch["labels"], batch["attention_mask"]
    right_padded = bool((mask[:, 1:] <= mask[:, :-1]).all())
    attention = None if right_padded else mask
    if type(model).__name__ in PLAIN_HEADS:
        labelled = labels[:, 1:] != -100
        hidden = model.model(input_ids=batch["input_ids"], attention_mask=attention).last_hidden_state
        logits, targets = model.lm_head(hidden[:, :-1][labelled]), labels[:, 1:][labelled]
    else:
        width = labels.shape[1]
        first = int((labels != -100).any(0).float().argmax())   # 0 when nothing is labelled: keep every position
        keep = min(width - first + 1, width)                     # + 1: a position's logits predict the next token
        logits = model(input_ids=batch["input_ids"], attention_mask=attention, logits_to_keep=keep).logits[:, :-1]
        logits, targets = logits.flatten(0, 1), labels[:, width - keep + 1:].flatten()
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, ignore_index=-100, reduction="sum")
    return loss, (targets != -100).sum()


@torch.no_grad()
def reference_loss(model, tokenizer, task_list: list, batch_size: int = 32) -> float:
    """Per-token loss of the reference solutions (teacher forced): the held-out loss of a split."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    examples = [encode(tokenizer, t.prompt, t.solution) for t in task_list]
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[i:i + batch_size], tokenizer.pad_token_id).items()}
        loss, n = token_losses(model, batch)
        total, count = total + loss.item(), count + n.item()
    return total / max(count, 1)


@torch.no_grad()
def block_loss(model, blocks: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss over `blocks` (the caller puts the model in eval mode; no RNG is consumed, so
    resuming stays exact)."""
    device = next(model.parameters()).device
    losses = [model(input_ids=b.to(device), labels=b.to(device)).loss.float().item()
              for b in blocks.split(batch_size)]
    return sum(losses) / len(losses)
