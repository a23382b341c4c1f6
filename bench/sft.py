"""Training tokens/s of labkit's SFT loop against Hugging Face TRL's SFTTrainer, same model, data and batch.

    .venv/bin/python bench/sft.py [--repeats 3] [--epochs 3] [--out runs/bench/sft.json]

Both sides fine-tune the embedded `small` model (random init, same seed) on the atomic library's tasks
(prompt -> reference body, loss on the body only, eos appended), global batch 16, AdamW, cosine schedule with
warmup, gradient clipping 1.0, no evaluation and no intermediate checkpoints. TRL runs twice per repeat: with
its defaults (random batches) and with `train_sampling_strategy="group_by_length"` (its own padding saver);
labkit is compared with the faster of the two. Repeats are interleaved (labkit, TRL, TRL grouped, labkit, ...)
and medians reported with their range, as NOTES-environment.md advises for these 2 shared cores.

Tokens are the real (non-padding) tokens each side trained on; time is the training loop only: TRL's
`train()` and labkit's loop up to its last logged step (model loading, tokenisation and the final checkpoint
are left out on both sides).
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch is imported: no spin-waiting threads

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from labkit import atomic, config, models, runs, sft, tasks

BATCH, LR, MAX_LEN, SEED = 16, 2e-3, 384, 0


def labkit_side(data_dir: Path, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cfg = config.resolve(sft.SFTConfig, None, {
            "model.name_or_path": "embedded", "model.size": "small", "data_dir": str(data_dir), "out_dir": out, "mixture": {"atom_base": 1.0},
            "epochs": epochs, "batch_size": BATCH, "lr": LR, "max_seq_len": MAX_LEN, "seed": SEED,
            "log_every": 1000, "eval.sizes": {}})
        run = sft.train(cfg)
        last = [r for r in run.metrics() if r["metric"] == "train_loss"][-1]
        return {"tokens": last["tokens"], "seconds": last["wall_time"], "final_loss": last["value"]}


def trl_side(task_list: list, epochs: int, strategy: str, packing: bool = False) -> dict:
    import datasets
    import trl

    model, tokenizer = models.load(models.ModelConfig(size="small"), seed=SEED)
    data = datasets.Dataset.from_list([{"prompt": t.prompt, "completion": t.solution} for t in task_list])
    with tempfile.TemporaryDirectory() as out:
        args = trl.SFTConfig(
            output_dir=out, per_device_train_batch_size=BATCH, num_train_epochs=epochs, learning_rate=LR,
            lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.0, max_grad_norm=1.0,
            max_length=MAX_LEN, packing=packing, completion_only_loss=True, train_sampling_strategy=strategy,
            bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none", save_strategy="no",
            logging_steps=1000, disable_tqdm=True, seed=SEED, dataloader_drop_last=True)
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
        t0 = time.time()
        result = trainer.train()
        seconds = time.time() - t0
    steps = result.global_step
    # Every batch is full (drop_last), so the tokens trained on are the mean length x examples seen.
    tokens = round(statistics.mean(lengths) * steps * BATCH)
    return {"tokens": tokens, "seconds": seconds, "final_loss": result.training_loss}


def summary(rows: list[dict]) -> dict:
    rates = [r["tokens"] / r["seconds"] for r in rows]
    return {"tokens_per_s_median": statistics.median(rates), "tokens_per_s_min": min(rates),
            "tokens_per_s_max": max(rates), "runs": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench/sft.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task_list = tasks.atom_base(atomic.library(SEED))
    data_dir = Path(tempfile.mkdtemp(prefix="bench-sft-data-"))
    runs.write_jsonl(data_dir / "atom_base.jsonl", [t.to_json() for t in task_list])
    (data_dir / "manifest.json").write_text(json.dumps({"note": "bench/sft.py: the atomic tasks only"}))

    sides = {"labkit": lambda: labkit_side(data_dir, args.epochs),
             "trl": lambda: trl_side(task_list, args.epochs, "random"),
             "trl_group_by_length": lambda: trl_side(task_list, args.epochs, "group_by_length"),
             "trl_packing": lambda: trl_side(task_list, args.epochs, "random", packing=True)}
    results = {name: [] for name in sides}
    for rep in range(args.repeats):
        for name, fn in sides.items():
            row = fn()
            results[name].append(row)
            print(f"repeat {rep + 1}/{args.repeats} {name:20s} {row['tokens'] / row['seconds']:8.0f} tokens/s "
                  f"({row['tokens']} tokens in {row['seconds']:.1f} s, final loss {row['final_loss']:.3f})",
                  file=sys.stderr)
    out = {name: summary(rows) for name, rows in results.items()}
    best_trl = max(out[name]["tokens_per_s_median"] for name in sides if name.startswith("trl"))
    out["ratio_vs_best_trl"] = out["labkit"]["tokens_per_s_median"] / best_trl
    out["ratio_vs_trl_default"] = out["labkit"]["tokens_per_s_median"] / out["trl"]["tokens_per_s_median"]
    out["setup"] = {"model": "embedded small (random init)", "examples": len(task_list), "batch": BATCH,
                    "epochs": args.epochs, "threads": args.threads, "repeats": args.repeats,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k.startswith("ratio")} |
                     {k: round(out[k]["tokens_per_s_median"]) for k in sides}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
