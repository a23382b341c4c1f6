"""A self-check of the install and, with --gpu, of training on a GPU: CUDA, bf16, every stage, LoRA, throughput.

    python -m labkit doctor                          # versions, the sandbox, CUDA + bf16 detection
    python -m labkit doctor --gpu --out runs/doctor  # and a few steps of every stage at the full presets

Why: on a rented GPU, the first real run is an expensive way to find a CUDA build that does not suit the
driver, a GPU without bf16, or a full preset that breaks. --gpu runs, within `budget_s` (five minutes at
most), the stages' own command lines as subprocesses: `synth --preset smoke`; `pretrain`, then `sft` from
it, then `rl` from that, all `--preset full` with a few steps, a small corpus and a few greedy evaluation
tasks; a small GPT-2 written here in save_pretrained format, and `sft --preset full` with LoRA on it. On a
GPU one stage uses it at a time, so each throughput (from the run's metrics.jsonl) is that stage's alone:
pretrain's logged tokens/s; sft's non-padding tokens/s between its first and last training log lines (step
one, CUDA's warm-up, falls outside); rl's sampled completion tokens/s of whole steps (sampling, sandbox,
update). CUDA is probed first in a subprocess, so a broken install (`is_available()` raising, a CUDA op
failing, a crash, a hang) gives a message, exit 1 and no training. Without a GPU, --gpu prints "no GPU:
skipped" and exits 0; `--device cpu` runs the same plan on the CPU at the smoke presets (how tests run it).
OUT/doctor.json is written once, at the end (temp file + rename; an older one is removed first); the runs
go to a scratch directory under OUT, kept as OUT/work with `keep=true`. Exit: 0 passed or skipped, 1 failed.
"""
from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from labkit.runs import read_jsonl


@dataclass
class DoctorConfig:
    out_dir: str = "runs/doctor"
    device: Literal["auto", "cuda", "cpu"] = "auto"  # where --gpu trains; cpu: a stand-in at smoke sizes
    preset: Literal["", "smoke", "full"] = ""        # the stages' preset; "": full on cuda, smoke on cpu
    model_size: Literal["", "tiny", "small", "medium"] = ""  # the embedded model's; "": the preset's
    steps: int = 10           # optimizer steps of pretrain, sft and LoRA; rl takes half (at least 2)
    budget_s: float = 270.0   # the whole check (--gpu): later stages are not run, running ones killed
    keep: bool = False        # keep the runs in OUT/work (checkpoints included)

    PRESETS: ClassVar[dict] = {}


CONFIG = DoctorConfig
CLI_ALIASES = {"--out": "out_dir", "--device": "device"}
FINAL = ("loss", "train_loss", "reward_mean", "kl", "pass@1")  # metrics reported at a run's last step
PACKAGES = ("torch", "transformers", "peft", "accelerate", "tokenizers", "tensorboard")


def add_arguments(parser) -> None:
    parser.add_argument("--gpu", action="store_true",
                        help="also train a few steps of every stage at the full presets on the GPU")


def run_cli(cfg: DoctorConfig, args) -> int:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "doctor.json").unlink(missing_ok=True)
    t0 = time.monotonic()
    result = check_install()
    cuda = result["cuda"]
    device = cfg.device if cfg.device != "auto" else "cuda" if cuda.get("available") else None
    if args.gpu and result["status"] == "ok":
        if device is None:
            print("no GPU: skipped")
            result["status"], result["smoke"] = "skipped", {"skipped": "no CUDA GPU visible"}
        elif device == "cuda" and not cuda.get("available"):
            print("labkit doctor: --device cuda but no CUDA GPU is visible", file=sys.stderr)
            result["status"] = "failed"
        else:
            result["smoke"] = smoke(cfg, device, out, cfg.budget_s - (time.monotonic() - t0))
            if any(s["status"] != "ok" for s in result["smoke"]["stages"].values()):
                result["status"] = "failed"
    result["seconds"] = round(time.monotonic() - t0, 1)
    _write_json(out / "doctor.json", result)
    print(f"doctor: {result['status']}; {out / 'doctor.json'}")
    return 0 if result["status"] in ("ok", "skipped") else 1


def check_install() -> dict:
    """Versions, one sandboxed program, and what torch sees of CUDA; printed as it goes."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    print(f"python {platform.python_version()}, " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    from labkit import sandbox
    verdict = sandbox.run("assert open(__file__).read().startswith('assert')\n")
    iso = [k for k, v in verdict.metadata.get("isolation", {}).items() if v]
    print(f"sandbox: {verdict.status} (isolation: {', '.join(iso) or 'none'})")
    cuda = probe()
    if "error" in cuda:
        print(f"CUDA is broken: {cuda['error']}; check the driver (nvidia-smi) and that torch's CUDA build "
              f"({cuda.get('cuda_build') or 'none'}) suits it", file=sys.stderr)
    elif cuda.get("available"):
        print(f"CUDA: {cuda['name']} ({cuda['memory_gib']} GiB, capability {cuda['capability']}), "
              f"bf16 {'yes' if cuda['bf16'] else 'no'}, CUDA {cuda['cuda_build']}")
    else:
        print(f"CUDA: no GPU visible (torch's CUDA build: {cuda.get('cuda_build') or 'none'})")
    ok = verdict.status == "pass" and "error" not in cuda
    return {"status": "ok" if ok else "failed", "python": platform.python_version(), "versions": versions,
            "sandbox": {"status": verdict.status, "isolation": iso}, "cuda": cuda}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --- CUDA ---------------------------------------------------------------------------------------------------

_PROBE = r"""
import json
out, step = {}, "import torch"
try:
    import torch
    out["torch"], out["cuda_build"] = torch.__version__, torch.version.cuda
    step = "torch.cuda.is_available()"
    out["available"] = torch.cuda.is_available()
    if out["available"]:
        step = "reading the GPU's properties"
        props = torch.cuda.get_device_properties(0)
        out.update(count=torch.cuda.device_count(), name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}", bf16=bool(torch.cuda.is_bf16_supported()))
        step = "a matrix product on the GPU"
        a = torch.ones(128, 128, device="cuda", dtype=torch.bfloat16 if out["bf16"] else torch.float32)
        value = (a @ a).float().sum().item()
        torch.cuda.synchronize()
        if value != 128 ** 3:
            raise RuntimeError(f"it gave {value}, not {128 ** 3}")
except BaseException as e:
    out["error"] = f"{step} failed: {type(e).__name__}: {e}"
print(json.dumps(out))
"""


def probe(timeout: float = 180.0) -> dict:
    """What torch sees of CUDA, from a fresh interpreter: a crash or a hang there can't take the doctor down."""
    try:
        p = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"the CUDA probe hung for {timeout:.0f} s (torch import or CUDA initialisation)"}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        how = f"signal {signal.Signals(-p.returncode).name}" if p.returncode < 0 else f"exit code {p.returncode}"
        return {"error": f"the CUDA probe died ({how}): {p.stderr.strip()[-500:]}"}


# --- the training smoke -----------------------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    argv: list[str]
    needs: tuple[str, ...] = ()
    run_dir: str | None = None            # where its metrics.jsonl lies
    steps: int = 0                        # the step it must reach
    clock: tuple[str, str] | None = None  # (split, metric): the lines its throughput is read from
    accelerator: bool = True              # uses the GPU: one such stage at a time there


def plan(work: Path, device: str, preset: str, model_size: str, steps: int) -> list[Stage]:
    """The stages of the smoke, as command lines."""
    lab = [sys.executable, "-m", "labkit"]
    d = {name: str(work / name) for name in ("data", "pretrain", "sft", "rl", "hf_model", "lora")}
    evals = {"eval.every": 0, "eval.n_samples": 0, "eval.max_new_tokens": 48,
             "eval.sizes": json.dumps({"train": 8, "test_in_domain": 8})}

    def sets(**kv) -> list[str]:
        return [a for k, v in {"model.device": device, **kv}.items() for a in ("--set", f"{k}={v}")]

    size = {"model.size": model_size} if model_size else {}
    rl_steps = max(2, steps // 2)
    gpt2 = "small" if preset == "full" else "tiny"
    return [
        Stage("synth", lab + ["synth", "--preset", "smoke", "--out", d["data"]], accelerator=False),
        Stage("pretrain", lab + ["pretrain", "--preset", preset, "--out", d["pretrain"]] + sets(
            **size, steps=steps, log_every=2, eval_every=steps, save_every=steps, eval_blocks=4,
            stdlib_chars=200_000, atomic_repeat=2), (), d["pretrain"], steps, ("train", "tokens_per_s")),
        Stage("sft", lab + ["sft", "--preset", preset, "--model", d["pretrain"], "--data", d["data"],
                            "--out", d["sft"]] + sets(max_steps=steps, log_every=1, **evals),
              ("synth", "pretrain"), d["sft"], steps, ("train", "train_loss")),
        Stage("rl", lab + ["rl", "--preset", preset, "--init", d["sft"], "--out", d["rl"]] + sets(
            steps=rl_steps, log_every=1, **evals), ("sft",), d["rl"], rl_steps, ("rl", "reward_mean")),
        Stage("hf_model", [sys.executable, "-c", f"from labkit import doctor; doctor.write_gpt2("
                           f"{d['hf_model']!r}, {d['pretrain'] + '/model'!r}, {gpt2!r})"],
              ("pretrain",), accelerator=False),
        Stage("lora", lab + ["sft", "--preset", preset, "--model", d["hf_model"], "--data", d["data"],
                             "--out", d["lora"]] + sets(**{"model.lora.enabled": "true",
                                                           "model.lora.target_modules": "c_attn"},
                                                        max_steps=steps, log_every=1, **evals),
              ("synth", "hf_model"), d["lora"], steps, ("train", "train_loss")),
    ]


def write_gpt2(path: str, tokenizer_dir: str, size: str) -> None:
    """A randomly initialised GPT-2 and the lab's tokenizer in save_pretrained format: a local HF model that
    is not the embedded Llama (other layer names, LoRA on `c_attn`)."""
    import transformers
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    dims = {"tiny": dict(n_embd=32, n_layer=2, n_head=2), "small": dict(n_embd=256, n_layer=4, n_head=4)}[size]
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=1024, **dims,
                                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                     pad_token_id=tokenizer.pad_token_id)
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def smoke(cfg: DoctorConfig, device: str, out: Path, budget_s: float) -> dict:
    preset = cfg.preset or ("full" if device == "cuda" else "smoke")
    work = out / "work" if cfg.keep else out / f".work-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    print(f"training smoke on {device}: the {preset} presets, {cfg.steps} steps each, within {budget_s:.0f} s")
    try:
        stages = plan(work, device, preset, cfg.model_size, cfg.steps)
        results = run_stages(stages, work / "logs", budget_s, exclusive=device == "cuda")
    finally:
        if not cfg.keep:
            shutil.rmtree(work, ignore_errors=True)
    return {"device": device, "preset": preset, "steps": cfg.steps, "stages": results}


def run_stages(stages: list[Stage], logs: Path, budget_s: float, exclusive: bool, parallel: int = 2) -> dict:
    """Run the stages as their needs allow (at most `parallel` at once; on a GPU one GPU stage at a time)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])),
        "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    deadline = time.monotonic() + budget_s
    pending, running, results = list(stages), {}, {}

    def ready(st: Stage) -> bool:
        gpu_busy = exclusive and st.accelerator and any(s.accelerator for s, _, _ in running.values())
        return all(results.get(n, {}).get("status") == "ok" for n in st.needs) and len(running) < parallel \
            and not gpu_busy

    try:
        while pending or running:
            for st in list(pending):
                failed = [n for n in st.needs if n in results and results[n]["status"] != "ok"]
                if failed or time.monotonic() > deadline:
                    why = f"needs {', '.join(failed)}, which did not pass" if failed else "out of time"
                    results[st.name] = {"status": "not_run", "why": why}
                    pending.remove(st)
                    _report(st.name, results[st.name])
                elif ready(st):
                    with open(logs / f"{st.name}.log", "w") as log:  # a session: a kill reaches its children
                        proc = subprocess.Popen(st.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                start_new_session=True)
                    running[st.name] = (st, proc, time.monotonic())
                    pending.remove(st)
            time.sleep(0.1)
            late = time.monotonic() > deadline
            for name, (st, proc, t0) in list(running.items()):
                if proc.poll() is None and not late:
                    continue
                killed = _kill(proc)
                del running[name]
                results[name] = summarise(st, proc.returncode, time.monotonic() - t0, logs / f"{name}.log", killed)
                _report(name, results[name])
    finally:  # an interrupted doctor (Ctrl-C) leaves no stage running behind it
        for _, proc, _ in running.values():
            _kill(proc)
    return results


def _kill(proc: subprocess.Popen) -> bool:
    """End a stage's whole process session if it still runs; True if it had to be killed."""
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def _report(name: str, r: dict) -> None:
    rate = f", {r['tokens_per_s']:.0f} tokens/s" if r.get("tokens_per_s") else ""
    took = f" in {r['seconds']:.0f} s" if "seconds" in r else ""
    print(f"  {name}: {r['status']}{took}{rate}" + (f" ({r['why']})" if "why" in r else ""))
    if r.get("log_tail"):
        print("    " + r["log_tail"].replace("\n", "\n    "))


def summarise(st: Stage, returncode: int, seconds: float, log: Path, killed: bool) -> dict:
    """A finished stage: passed only with exit 0, its last step reached and a finite loss."""
    r = {"status": "ok", "seconds": round(seconds, 1), "returncode": returncode,
         "command": " ".join(map(shlex.quote, st.argv))}
    metrics_path = Path(st.run_dir or "") / "metrics.jsonl"
    records = read_jsonl(metrics_path) if st.run_dir and metrics_path.exists() else []
    if records:
        last = max(x["step"] for x in records)
        r["steps"] = last
        r["final"] = {f"{x['split']}/{x['metric']}": x["value"] for x in records
                      if x["step"] == last and x["metric"] in FINAL}
        r["tokens_per_s"] = throughput(records, st.clock)
    if killed:
        r["status"], r["why"] = "timeout", "killed at the end of the time budget"
    elif returncode != 0:
        r["status"], r["why"] = "failed", f"exit code {returncode}"
    elif st.run_dir and r.get("steps", -1) < st.steps:
        r["status"], r["why"] = "failed", f"reached step {r.get('steps')} of {st.steps}"
    elif any(not math.isfinite(v) for v in r.get("final", {}).values()):
        r["status"], r["why"] = "failed", "a metric is not finite (NaN or inf)"
    if r["status"] != "ok":
        r["log_tail"] = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    return r


def throughput(records: list[dict], clock: tuple[str, str] | None) -> float | None:
    """Tokens per second: a logged tokens_per_s (its last value), else the growth of the lines' `tokens`
    over their `wall_time` from the first line of `clock` to its last."""
    if clock is None:
        return None
    lines = [r for r in records if (r.get("split"), r.get("metric")) == clock]
    if clock[1] == "tokens_per_s":
        return round(lines[-1]["value"], 1) if lines else None
    lines = [r for r in lines if "tokens" in r and "wall_time" in r]
    if len(lines) < 2 or lines[-1]["wall_time"] <= lines[0]["wall_time"]:
        return None
    return round((lines[-1]["tokens"] - lines[0]["tokens"]) / (lines[-1]["wall_time"] - lines[0]["wall_time"]), 1)
