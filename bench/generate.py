"""Sampling throughput: labkit's generation (`sampling.complete`: KV cache, a finished sample leaves the batch)
vs Hugging Face `model.generate` with a stopping criterion for the same stop rule (what the lab used before), and
vs plain `model.generate` that runs to eos or max_new_tokens, on the atomic prompts; per token, labkit with its
stop rule off (`function_end=False`: to eos or max_new_tokens) against plain `model.generate`, the same tokens.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/generate.py [--model base] [--prompts 300]

--model is "base" (the committed base, default), "embedded" (a fresh `small` model) or a model directory; a
pretrained one is more telling, since the early stop only helps a model that ends its bodies. Greedy. Repeats are
interleaved; medians are compared; all sides use the same batch size. "Useful tokens" are those of the
completions after the stop rule cut them, i.e. what an evaluation needs; "generated tokens" count everything the
model produced (`ms_per_generated_token`). Writes runs/bench/generate.json.
"""
import argparse
import json
import re
import statistics
import time
from pathlib import Path

import torch

import transformers

from labkit import atomic, sampling, tasks
from labkit import models


UNINDENTED_LINE = re.compile(r"(?:^|\n)\S")


class StopAtUnindentedLine(transformers.StoppingCriteria):
    """The stop rule as a `generate` stopping criterion: decode each row's new text at every step."""

    def __init__(self, tokenizer, prompt_width: int):
        self.tokenizer, self.prompt_width = tokenizer, prompt_width

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width:], skip_special_tokens=True)
        return torch.tensor([bool(UNINDENTED_LINE.search(t)) for t in texts], device=input_ids.device)


def hf_generate(model, tokenizer, prompts, max_new_tokens, batch_size, stop_rule: bool) -> list[str]:
    """The peers: one HF generate call per batch with the KV cache, stopping at eos or max_new_tokens, and with
    `stop_rule` also once every row of the batch has ended its function."""
    out = []
    tokenizer.padding_side = "left"
    for start in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        width = enc["input_ids"].shape[1]
        ids = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                             stopping_criteria=[StopAtUnindentedLine(tokenizer, width)] if stop_rule else None)
        out += tokenizer.batch_decode(ids[:, width:], skip_special_tokens=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--prompts", type=int, default=300, help="atomic prompts (the library has 300)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="runs/bench/generate.json")
    a = parser.parse_args()

    name = a.model
    model, tokenizer = models.load(models.ModelConfig(name_or_path=name, size="small"), seed=0)
    model.eval()
    prompts = [t.prompt for t in tasks.atom_base(atomic.library())][:a.prompts]
    sides = {
        "labkit": lambda: sampling.complete(model, tokenizer, prompts, max_new_tokens=a.max_new_tokens,
                                            batch_size=a.batch_size),
        "labkit_same_length": lambda: sampling.complete(model, tokenizer, prompts, max_new_tokens=a.max_new_tokens,
                                                        batch_size=a.batch_size, function_end=False),
        "generate_with_stop_rule": lambda: hf_generate(model, tokenizer, prompts, a.max_new_tokens,
                                                       a.batch_size, stop_rule=True),
        "plain_generate": lambda: hf_generate(model, tokenizer, prompts, a.max_new_tokens, a.batch_size,
                                              stop_rule=False),
    }
    sides["labkit"]()   # warm-up
    times, texts = {s: [] for s in sides}, {}
    for _ in range(a.repeats):
        for side, fn in sides.items():
            t0 = time.perf_counter()
            texts[side] = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[side].append(time.perf_counter() - t0)

    def n_tokens(strings):
        return sum(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in strings)

    result = {"model": name, "params": models.n_params(model), "prompts": len(prompts),
              "max_new_tokens": a.max_new_tokens, "batch_size": a.batch_size, "repeats": a.repeats,
              "threads": torch.get_num_threads(),
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    useful = n_tokens([tasks.cut_completion(t) for t in texts["labkit"]])
    for side, ts in times.items():
        t = statistics.median(ts)
        result[side] = {"seconds_median": t, "seconds_range": [min(ts), max(ts)],
                        "generated_tokens": n_tokens(texts[side]), "generated_tokens_per_s": n_tokens(texts[side]) / t,
                        "ms_per_generated_token": 1000 * t / n_tokens(texts[side]),
                        "useful_tokens_per_s": useful / t}
        print(f"{side:15s} {t:6.2f} s  {n_tokens(texts[side]) / t:8.0f} generated tok/s  "
              f"{useful / t:8.0f} useful tok/s")
    for peer in ("generate_with_stop_rule", "plain_generate"):
        result[f"speedup_over_{peer}"] = result[peer]["seconds_median"] / result["labkit"]["seconds_median"]
        print(f"labkit speed-up over {peer}: {result[f'speedup_over_{peer}']:.2f}x")
    result["per_token_ratio_generate_over_labkit_same_length"] = (
        result["plain_generate"]["ms_per_generated_token"] / result["labkit_same_length"]["ms_per_generated_token"])
    print(f"per generated token, same length: plain generate / labkit "
          f"{result['per_token_ratio_generate_over_labkit_same_length']:.2f}")
    result["greedy_bodies_identical_to_peer"] = [tasks.cut_completion(t) for t in texts["labkit"]] == \
        [tasks.cut_completion(t) for t in texts["generate_with_stop_rule"]]
    print("greedy bodies identical to the generate peer:", result["greedy_bodies_identical_to_peer"])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
