"""Sampling: batched generation with the KV cache that stops each sample at the end of its function.

    texts = complete(model, tokenizer, prompts, temperature=0.0, max_new_tokens=128)   # one body per prompt

Evaluation (`evaluate.py`) and RL (`rl.py`) both sample function bodies from prompts that end in a newline
(a `def` line and docstring). A body ends at its first non-indented line or at a special token (eos): the stop
rule of `tasks.cut_completion`. `generate` applies that rule per token with two lookup tables, and a finished
sample leaves the batch, so the cost follows the tokens actually generated. Why not `model.generate` with a
stopping criterion: it keeps computing finished rows until the longest sample of its batch ends, and decoding
the batch at every step to test the rule costs more than the model at the lab's sizes (bench/generate.py
measures both, and checks that they write the same bodies).
"""
from __future__ import annotations

import functools

import torch


def token_pieces(tokenizer) -> list[str]:
    """The text of every token id on its own; special tokens are empty (they never reach a program)."""
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    for i in tokenizer.all_special_ids:
        pieces[i] = ""
    return pieces


def _scan(piece: str, at_line_start: bool) -> tuple[bool, bool]:
    """(does this piece start a non-indented line?, is the text at a line start after it?)"""
    for ch in piece:
        if ch == "\n":
            at_line_start = True
        elif at_line_start and not ch.isspace():
            return True, False
        else:
            at_line_start = False
    return False, at_line_start


class FunctionEnd:
    """The stop rule of `tasks.cut_completion` per token: a sample ends once it starts a non-indented line or
    emits a special token (eos). Two lookup tables indexed by (at a line start?, token id) make the check a
    gather instead of a decode. Prompts end with a newline, so every sample starts at a line start."""

    def __init__(self, pieces: list[str], special_ids: list[int], device):
        scans = [[_scan(p, s) for p in pieces] for s in (False, True)]
        self.done = torch.tensor([[d for d, _ in row] for row in scans], device=device)
        self.nxt = torch.tensor([[int(a) for _, a in row] for row in scans], device=device)
        self.done[:, special_ids] = True


@functools.lru_cache(maxsize=8)
def stop_rule(tokenizer, device) -> FunctionEnd:
    """The `FunctionEnd` tables of a tokenizer, built once per tokenizer and device: building them scans every
    token, which a large vocabulary would otherwise pay at every evaluation and RL step.
    A tokenizer must not gain tokens after its first use here."""
    return FunctionEnd(token_pieces(tokenizer), tokenizer.all_special_ids, device)


def _pick(logits: torch.Tensor, temperature: float, top_p: float, greedy: bool) -> torch.Tensor:
    if greedy:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    if top_p < 1.0:   # nucleus: keep the smallest set of tokens whose probability reaches top_p
        sorted_p, order = probs.sort(-1, descending=True)
        sorted_p[(sorted_p.cumsum(-1) - sorted_p) >= top_p] = 0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1).squeeze(1)


@torch.no_grad()
def generate(model, prompt_ids, prompt_mask, stop: FunctionEnd, *, max_new_tokens: int, temperature: float = 1.0,
             top_p: float = 1.0, greedy: bool = False, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample with the KV cache; a finished sample leaves the batch (its rows of the cache are dropped), so the
    cost follows the tokens actually generated, not batch size x the longest sample.

    Returns (tokens [N, max_new_tokens] padded with pad_id, lengths [N]: tokens up to and including the one
    that ended the function, or -1 when max_new_tokens came first).
    """
    from transformers import DynamicCache

    n = len(prompt_ids)
    device = prompt_ids.device
    out = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device)
    lengths = torch.full((n,), -1, dtype=torch.long, device=device)
    rows = torch.arange(n, device=device)
    mask = prompt_mask
    positions = (mask.cumsum(1) - 1).clamp(min=0)   # left padding: each prompt's positions start at 0
    cache = DynamicCache()
    logits = model(input_ids=prompt_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1]
    position = positions[:, -1] + 1
    at_start = torch.ones(n, dtype=torch.long, device=device)
    for t in range(max_new_tokens):
        token = _pick(logits, temperature, top_p, greedy)
        out[rows, t] = token
        done = stop.done[at_start, token]
        at_start = stop.nxt[at_start, token]
        lengths[rows[done]] = t + 1
        if t == max_new_tokens - 1 or done.all():
            break
        if done.any():
            keep = (~done).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, mask, token, position, at_start = rows[keep], mask[keep], token[keep], position[keep], at_start[keep]
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], 1)
        logits = model(input_ids=token.unsqueeze(1), attention_mask=mask, position_ids=position.unsqueeze(1),
                       past_key_values=cache, use_cache=True).logits[:, -1]
        position = position + 1
    return out, lengths



def encode_prompts(tokenizer, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids, tokenised like `batches.encode` (no special tokens)."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, ids))
    out = torch.tensor([[tokenizer.pad_token_id] * (width - len(x)) + x for x in ids], device=device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
    return out, mask


@torch.no_grad()
def complete(model, tokenizer, prompts: list[str], *, temperature: float = 0.0, top_p: float = 1.0,
             max_new_tokens: int = 128, batch_size: int = 256) -> list[str]:
    """One completion per prompt: the generated text up to and including the token that ended the function
    (not yet cut by `tasks.cut_completion`); greedy when temperature is 0. Samples with the caller's torch RNG.

    Large batches pay: finished samples leave the batch, and the per-token cost is mostly fixed overhead at the
    lab's sizes."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    stop = stop_rule(tokenizer, device)
    # Batches of similar length waste less on padding; results are put back in the callers' order.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out = [""] * len(prompts)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            ids, mask = encode_prompts(tokenizer, [prompts[i] for i in idx], device)
            gen, lengths = generate(model, ids, mask, stop, max_new_tokens=max_new_tokens, greedy=temperature == 0,
                                    temperature=temperature or 1.0, top_p=top_p, pad_id=tokenizer.pad_token_id)
            for i, row, k in zip(idx, gen.tolist(), lengths.tolist()):
                out[i] = tokenizer.decode(row[:k if k >= 0 else max_new_tokens], skip_special_tokens=True)
    finally:
        model.train(was_training)
    return out
