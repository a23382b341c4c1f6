"""Sampling: batched generation with the KV cache that stops each sample at the end of its function.

    texts = complete(model, tokenizer, prompts, temperature=0.0, max_new_tokens=128)   # one body per prompt

Evaluation (`evaluate.py`) and RL (`rl.py`) both sample function bodies from prompts that end in a newline
(a `def` line and docstring). A body ends at its first non-indented line or at a special token (eos): the stop
rule of `tasks.cut_completion`. `generate` applies that rule per token with two lookup tables, and finished
samples leave the batch, so the cost follows the tokens actually generated. Why not `model.generate` with a
stopping criterion: it keeps computing finished rows until the longest sample of its batch ends, and decoding
the batch at every step to test the rule costs more than the model at the lab's sizes (bench/generate.py
measures both, and checks that they write the same bodies).

Per token, what a decoding step costs beside the model at these sizes, and what this module does instead
(bench/generate.py and bench/rl_step.py measure it): transformers' `DynamicCache` concatenates every layer's
keys and values at every token (a copy of the whole cache), so the cache here is written in place into buffers
sized once (`_Room`); torch.multinomial draws one random number per vocabulary entry, so a sample here
inverts the cumulative distribution at one uniform number per row (`_pick`); dropping finished rows copies the
cache, so they are dropped once a quarter of the batch has finished (`COMPACT_SHARE`).
"""
from __future__ import annotations

import functools

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer


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


def eos_only(tokenizer, device) -> FunctionEnd:
    """The stop rule switched off: a sample ends only at a special token (eos) or at max_new_tokens, as
    `model.generate`'s and TRL's do (the benchmarks' same-length comparisons)."""
    return FunctionEnd([""] * len(tokenizer), tokenizer.all_special_ids, device)


def _pick(logits: torch.Tensor, temperature: float, top_p: float, greedy: bool) -> torch.Tensor:
    """One token per row: the argmax, or a draw from the softmax at `temperature` (within the nucleus `top_p`).

    The draw inverts each row's cumulative distribution at one uniform number. torch.multinomial draws one
    exponential number per vocabulary entry instead, which costs more than the model's forward at the lab's
    sizes (bench/generate.py)."""
    if greedy:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    order = None
    if top_p < 1.0:   # nucleus: keep the smallest set of tokens whose probability reaches top_p
        probs, order = probs.sort(-1, descending=True)
        probs[(probs.cumsum(-1) - probs) >= top_p] = 0
    cdf = probs.cumsum(-1)
    total = cdf[:, -1:]
    u = torch.rand(total.shape, device=cdf.device, dtype=cdf.dtype) * total
    # The first entry whose cumulative probability exceeds u (never one of probability 0); `last` guards the
    # case where rounding puts u at the total.
    last = (cdf < total).sum(-1, keepdim=True)
    picked = torch.minimum(torch.searchsorted(cdf, u, right=True), last)
    return (picked if order is None else order.gather(-1, picked)).squeeze(1)


class _Room(DynamicLayer):
    """One layer's keys and values in buffers sized once for the prompt and `room` new tokens: each token is
    written in place, where `DynamicLayer` concatenates (a copy of the whole cache per layer and token)."""

    def __init__(self, room: int):
        super().__init__()
        self.room, self.length = room, 0

    def update(self, key_states, value_states, *args, **kwargs):
        n = key_states.shape[-2]
        if not self.is_initialized:
            self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
            b, h, t, d = key_states.shape
            self.key_buf = key_states.new_empty(b, h, t + self.room, d)
            self.value_buf = value_states.new_empty(b, h, t + self.room, d)
        self.key_buf[:, :, self.length:self.length + n] = key_states
        self.value_buf[:, :, self.length:self.length + n] = value_states
        self.length += n
        self._views()
        return self.keys, self.values

    def _views(self):
        self.keys, self.values = self.key_buf[:, :, :self.length], self.value_buf[:, :, :self.length]

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.key_buf, self.value_buf = self.key_buf[indices], self.value_buf[indices]
        self._views()


def new_cache(model, room: int):
    """A KV cache for `room` new tokens after the prompt. Models with sliding-window or other non-full
    attention layers get transformers' own `DynamicCache` for their config."""
    config = getattr(model, "config", None)
    text = config.get_text_config(decoder=True) if config is not None else None
    if any(t != "full_attention" for t in (getattr(text, "layer_types", None) or [])):
        return DynamicCache(config=config)
    return Cache(layer_class_to_replicate=functools.partial(_Room, room))


# A finished sample stays in the batch (its token ignored) until this share of the batch has finished: dropping
# rows copies the whole cache, and doing so at every token cost more than computing the finished rows.
COMPACT_SHARE = 0.25


@torch.no_grad()
def generate(model, prompt_ids, prompt_mask, stop: FunctionEnd, *, max_new_tokens: int, temperature: float = 1.0,
             top_p: float = 1.0, greedy: bool = False, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample with the KV cache; finished samples leave the batch (their rows of the cache are dropped) once
    `COMPACT_SHARE` of it has finished, so the cost follows the tokens actually generated, not batch size x the
    longest sample.

    Returns (tokens [N, max_new_tokens] padded with pad_id, lengths [N]: tokens up to and including the one
    that ended the function, or -1 when max_new_tokens came first).
    """
    n = len(prompt_ids)
    device = prompt_ids.device
    out = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device)
    lengths = torch.full((n,), -1, dtype=torch.long, device=device)
    rows = torch.arange(n, device=device)            # the batch's rows, as rows of `out`
    live = torch.ones(n, dtype=torch.bool, device=device)
    mask = prompt_mask
    positions = (mask.cumsum(1) - 1).clamp(min=0)   # left padding: each prompt's positions start at 0
    cache = new_cache(model, max_new_tokens)
    logits = model(input_ids=prompt_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1]
    position = positions[:, -1] + 1
    at_start = torch.ones(n, dtype=torch.long, device=device)
    for t in range(max_new_tokens):
        token = torch.where(live, _pick(logits, temperature, top_p, greedy), pad_id)
        out[rows, t] = token
        done = stop.done[at_start, token] & live
        at_start = stop.nxt[at_start, token]
        lengths[rows[done]] = t + 1
        live &= ~done
        if t == max_new_tokens - 1 or not live.any():
            break
        if (~live).sum() >= COMPACT_SHARE * len(live):
            keep = live.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, mask, token, position, at_start = rows[keep], mask[keep], token[keep], position[keep], at_start[keep]
            live = live[keep]
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
             max_new_tokens: int = 128, batch_size: int = 256, function_end: bool = True) -> list[str]:
    """One completion per prompt: the generated text up to and including the token that ended the function
    (not yet cut by `tasks.cut_completion`); greedy when temperature is 0. Samples with the caller's torch RNG.
    `function_end=False` samples on to eos or max_new_tokens (`eos_only`).

    Large batches pay: finished samples leave the batch, and the per-token cost is mostly fixed overhead at the
    lab's sizes."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    stop = stop_rule(tokenizer, device) if function_end else eos_only(tokenizer, device)
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
