"""Sampling: the per-token stop rule agrees with `tasks.cut_completion`, and batched generation with the KV cache
and early stopping gives what plain `model.generate` without a cache gives, cut by the same rule."""
import types

import pytest
import torch
import transformers

from labkit import atomic, sampling, tasks
from labkit import models


class Scripted(torch.nn.Module):
    """A stand-in model that writes `script` token by token after a one-token prompt, whatever it is fed."""

    def __init__(self, script: list[int], vocab: int):
        super().__init__()
        self.script, self.vocab = script, vocab

    def forward(self, input_ids, position_ids, **kwargs):
        logits = torch.full((len(input_ids), 1, self.vocab), -1e9)
        logits[:, 0, self.script[position_ids[0, -1].item()]] = 0.0   # position 0 is the prompt
        return types.SimpleNamespace(logits=logits)


@pytest.mark.parametrize("text", ["    return 1\nprint(f())\n", "    x = 1\n\n    return x\n", "oops",
                                  "    if x:\n        return 1\n    return 2\ndef g():\n    pass\n",
                                  "    s = \'\'\'\nnot code\'\'\'\n", "\n\n    return 1\n# a comment\n"])
def test_generation_ends_a_sample_where_cut_completion_cuts_it(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stop = sampling.stop_rule(tokenizer, "cpu")
    prompt = torch.tensor([[tokenizer.pad_token_id]])
    out, lengths = sampling.generate(Scripted(ids + [tokenizer.eos_token_id], len(tokenizer)), prompt,
                                     torch.ones_like(prompt), stop, max_new_tokens=len(ids) + 1, greedy=True)
    end = lengths[0].item()
    assert out[0, :end].tolist() == (ids + [tokenizer.eos_token_id])[:end]
    kept = tokenizer.decode(ids[:end])
    # The sample ends with the token that starts the first non-indented line (or at eos when there is none):
    # cutting what was kept gives the same body as cutting the whole text, and nothing before that token ends it.
    assert tasks.cut_completion(kept) == tasks.cut_completion(text)
    before = tokenizer.decode(ids[:end - 1])
    assert tasks.cut_completion(before) == before
    assert (end == len(ids) + 1) == (tasks.cut_completion(text) == text)


def test_eos_ends_a_sample(tokenizer):
    stop = sampling.stop_rule(tokenizer, "cpu")
    assert stop.done[0, tokenizer.eos_token_id] and stop.done[1, tokenizer.eos_token_id]


@pytest.fixture(scope="module")
def tiny_gpt2(tokenizer):
    """Another architecture (learned absolute positions, its own cache layout), as a local HF model would be."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                                     bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    return transformers.GPT2LMHeadModel(config), tokenizer


@pytest.fixture(scope="module")
def prompts():
    chosen = {"double", "digit_sum", "reverse_string", "sum_list", "count_vowels", "is_even"}
    return [t.prompt for t in tasks.atom_base(atomic.library()) if t.entry_point in chosen]


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_gpt2"])
def test_greedy_completions_match_plain_generate_without_a_cache(which, prompts, request):
    model, tok = request.getfixturevalue(which)
    model.train()                         # dropout on: complete must switch it off and back
    fast = sampling.complete(model, tok, prompts, max_new_tokens=24, batch_size=4)
    assert model.training
    model.eval()
    peer = []
    for p in prompts:   # one prompt at a time: no padding, no cache, no stopping, then cut by the rule
        ids = tok(p, return_tensors="pt", add_special_tokens=False)["input_ids"]
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=24,
                             use_cache=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        peer.append(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    assert [tasks.cut_completion(t) for t in fast] == [tasks.cut_completion(t) for t in peer]
    for text, full in zip(fast, peer):   # nothing generated past the token that ended the function
        assert full.startswith(text)
        rest = text[len(tasks.cut_completion(text).rstrip("\n")):].lstrip("\n")
        assert "\n" not in rest.rstrip("\n")


def test_sampling_is_seeded_and_greedy_does_not_depend_on_the_batch_size(tiny_llama, prompts):
    model, tok = tiny_llama

    def sampled(batch_size):
        torch.manual_seed(3)
        return sampling.complete(model, tok, prompts * 4, temperature=1.0, top_p=0.95, max_new_tokens=24,
                                 batch_size=batch_size)
    assert sampled(8) == sampled(8)
    assert len(set(sampled(8))) > len(prompts)   # samples of one prompt differ
    assert sampling.complete(model, tok, prompts, max_new_tokens=24, batch_size=1) == \
        sampling.complete(model, tok, prompts, max_new_tokens=24, batch_size=64)


def test_a_draw_follows_the_distribution_and_never_picks_outside_the_nucleus():
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = probs.clamp(min=1e-30).log().expand(20_000, -1)
    counts = torch.bincount(sampling._pick(logits, 1.0, 1.0, False), minlength=5).float() / 20_000
    assert torch.allclose(counts, probs, atol=0.015)   # ~3 standard errors of a share of 20,000 draws
    assert counts[4] == 0                               # probability 0 is never drawn
    nucleus = torch.bincount(sampling._pick(logits, 1.0, 0.75, False), minlength=5).float() / 20_000
    # top_p 0.75 keeps {0.5, 0.3}: renormalised 0.625 / 0.375, nothing else
    assert nucleus[2:].sum() == 0 and abs(nucleus[0] - 0.625) < 0.015


def test_where_finished_samples_leave_the_batch_changes_no_greedy_body(tiny_llama, prompts, monkeypatch):
    model, tok = tiny_llama
    bodies = []
    for share in (0.0, 0.25, 2.0):   # drop at once, once a quarter has finished, never
        monkeypatch.setattr(sampling, "COMPACT_SHARE", share)
        bodies.append(sampling.complete(model, tok, prompts * 3, max_new_tokens=24, batch_size=64))
    assert bodies[0] == bodies[1] == bodies[2]


def test_without_the_function_end_a_sample_runs_to_eos(tokenizer):
    ids = tokenizer("    return 1\nprint(f())\n", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    prompt = torch.tensor([[tokenizer.pad_token_id]])
    ends = []
    for stop in (sampling.stop_rule(tokenizer, "cpu"), sampling.eos_only(tokenizer, "cpu")):
        out, lengths = sampling.generate(Scripted(ids, len(tokenizer)), prompt, torch.ones_like(prompt), stop,
                                         max_new_tokens=len(ids) + 5, greedy=True)
        ends.append(lengths[0].item())
    assert tokenizer.decode(ids[:ends[0]]).endswith("\npr")   # the function ends at the token starting `print`
    assert ends[1] == len(ids)                             # ... but without the rule only eos ends the sample
