"""Training throughput: labkit's pretraining step vs a plain Hugging Face Trainer, same model, same blocks.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/train.py [--size small] [--steps 10] [--repeats 3]

Both sides train a fresh embedded model (same seed) on the same packed blocks with AdamW, the same learning
rate and gradient clipping; repeats are interleaved and the medians compared. Tokens/s counts every token of
every block (packing leaves no padding). Model FLOP/s uses the usual 6 x parameters x tokens estimate; on a
GPU it is also given as a share of the card's bf16 peak (MFU) when the card is known.
Writes runs/bench/train.json.
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import transformers

from labkit import models
from labkit import pretrain

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}   # dense bf16 FLOP/s from the vendors' sheets


def labkit_run(cfg, blocks, steps: int) -> float:
    model, _ = models.load(cfg.model, cfg.seed)
    optimizer = pretrain.make_optimizer(model, cfg)
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    for step in range(steps):
        batch = blocks[pretrain.batch_indices(step, cfg.batch_size, len(blocks), cfg.seed)].to(device)
        pretrain.train_step(model, optimizer, batch, cfg.lr, cfg.grad_clip)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def trainer_run(cfg, blocks, steps: int, out_dir: Path) -> float:
    model, _ = models.load(cfg.model, cfg.seed)
    rows = [{"input_ids": b, "labels": b} for b in blocks[:steps * cfg.batch_size]]
    args = transformers.TrainingArguments(
        output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr, weight_decay=cfg.weight_decay, max_grad_norm=cfg.grad_clip, lr_scheduler_type="constant",
        adam_beta2=0.95, report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(), seed=cfg.seed)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows)
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=list(models.SIZES))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--out", default="runs/bench/train.json")
    a = parser.parse_args()

    cfg = pretrain.PretrainConfig(batch_size=a.batch_size, seq_len=a.seq_len, stdlib_chars=300_000)
    cfg.model.size = a.size
    tokenizer = models.embedded_tokenizer()
    blocks = pretrain.pack(pretrain.corpus(cfg)["train"], tokenizer, cfg.seq_len, cfg.seed)
    n_params = models.n_params(models.load(cfg.model, 0)[0])
    tokens = a.steps * a.batch_size * a.seq_len
    labkit_run(cfg, blocks, 2)   # warm-up: allocator, kernels
    times = {"labkit": [], "hf_trainer": []}
    for _ in range(a.repeats):   # interleaved, so load on the shared machine hits both sides alike
        times["labkit"].append(labkit_run(cfg, blocks, a.steps))
        times["hf_trainer"].append(trainer_run(cfg, blocks, a.steps, Path(a.out).parent / "trainer_tmp"))
    result = {"size": a.size, "params": n_params, "batch_size": a.batch_size, "seq_len": a.seq_len,
              "steps": a.steps, "repeats": a.repeats, "threads": torch.get_num_threads(),
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    for side, ts in times.items():
        tps = [tokens / t for t in ts]
        result[side] = {"tokens_per_s_median": statistics.median(tps), "tokens_per_s_range": [min(tps), max(tps)],
                        "model_flops_per_s": 6 * n_params * statistics.median(tps)}
        peak = next((v for k, v in PEAK_BF16.items() if k in result["device"]), None)
        if peak:
            result[side]["mfu"] = result[side]["model_flops_per_s"] / peak
        print(f"{side:11s} {statistics.median(tps):9.0f} tokens/s  (range {min(tps):.0f}-{max(tps):.0f})")
    result["ratio_labkit_over_trainer"] = (result["labkit"]["tokens_per_s_median"]
                                           / result["hf_trainer"]["tokens_per_s_median"])
    print(f"labkit / HF Trainer: {result['ratio_labkit_over_trainer']:.2f}x  ({n_params / 1e6:.2f} M params, "
          f"{result['device']}, {result['threads']} threads)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
