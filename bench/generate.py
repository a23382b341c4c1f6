"""Sampling throughput: labkit's generation (KV cache + early stop) vs the same without the cache, and vs
plain `model.generate` that runs to max_new_tokens, on the atomic prompts.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/generate.py [--model runs/pretrain] [--prompts 32]

Without --model (or if it does not exist) a fresh embedded `small` model is used; a pretrained one is more
telling, since the early stop only helps a model that ends its bodies. Repeats are interleaved; medians are
compared. "Useful tokens" are those of the completions after the stop rule cut them, i.e. what an evaluation
needs; "generated tokens" count everything the model produced. Writes runs/bench/generate.json.
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from labkit import atomic, evaluate, synth, tasks
from labkit import model as models


def plain_generate(model, tokenizer, prompts, max_new_tokens, batch_size) -> list[str]:
    """The peer: one HF generate call per batch with the KV cache, stopping only at eos or max_new_tokens."""
    out = []
    tokenizer.padding_side = "left"
    for start in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        ids = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        out += tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/pretrain")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="runs/bench/generate.json")
    a = parser.parse_args()

    name = a.model if Path(a.model).exists() else "embedded"
    model, tokenizer = models.load(models.ModelConfig(name_or_path=name, size="small"), seed=0)
    model.eval()
    prompts = [t.prompt for t in synth.atom_base(atomic.library())][:a.prompts]
    sides = {
        "labkit": lambda: evaluate.generate(model, tokenizer, prompts, max_new_tokens=a.max_new_tokens,
                                            batch_size=a.batch_size),
        "no_kv_cache": lambda: evaluate.generate(model, tokenizer, prompts, max_new_tokens=a.max_new_tokens,
                                                 batch_size=a.batch_size, use_cache=False),
        "plain_generate": lambda: plain_generate(model, tokenizer, prompts, a.max_new_tokens, a.batch_size),
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
                        "useful_tokens_per_s": useful / t}
        print(f"{side:15s} {t:6.2f} s  {n_tokens(texts[side]) / t:8.0f} generated tok/s  "
              f"{useful / t:8.0f} useful tok/s")
    for peer in ("no_kv_cache", "plain_generate"):
        result[f"speedup_over_{peer}"] = result[peer]["seconds_median"] / result["labkit"]["seconds_median"]
        print(f"labkit speed-up over {peer}: {result[f'speedup_over_{peer}']:.2f}x")
    result["greedy_identical_to_no_cache"] = texts["labkit"] == texts["no_kv_cache"]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
