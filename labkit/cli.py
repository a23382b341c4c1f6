"""The command line: `python -m labkit <stage> [--preset P] [--set key=value ...] [stage flags]`.

Every stage module provides, by convention:
    CONFIG        its dataclass config class (with PRESETS)
    CLI_ALIASES   optional {"--flag": "dotted.config.key"}: short flags that are just `--set` in disguise
    add_arguments(parser)  optional: stage-specific action flags (e.g. `atomic --check`)
    run_cli(cfg, args) -> int   does the work and returns the exit code
Stage modules are imported only when their stage is asked for, so `labkit atomic` never imports torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from labkit import config

STAGES = {
    "atomic": ("labkit.atomic", "the library of atomic functions: check, list, export"),
    "synth": ("labkit.synth", "synthesise composite functions and write the data splits"),
    "pretrain": ("labkit.pretrain", "train the embedded default base model on a local corpus"),
    "eval": ("labkit.evaluate", "sample from a model and measure pass@k per split"),
    "sft": ("labkit.sft", "supervised fine-tuning with generalisation and overfitting curves"),
    "rl": ("labkit.rl", "online RL with unit-test feedback (GRPO, RLTF)"),
    "passk": ("labkit.passk", "pass@k out to large k per model and split: does RL add abilities or sharpen them?"),
    "figures": ("labkit.viz.export", "write the dashboard's figures of run directories as PNG and HTML"),
    "regress": ("labkit.regress", "run every notebook with papermill and check its metrics against thresholds"),
    "findings": ("labkit.viz.findings", "the experiment suite over seeds; findings decided by fixed rules"),
    "export-tb": ("labkit.export_tb", "write run directories' metrics as TensorBoard scalars (split/metric)"),
    "doctor": ("labkit.doctor", "check the install, CUDA and bf16; --gpu: a few steps of every stage on the GPU"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="labkit", description="The SFT <-> RL lab.")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    for name, (_, help_text) in STAGES.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STAGES:
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"labkit: unknown stage {argv[0]!r}; stages: {', '.join(STAGES)}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0

    module = importlib.import_module(STAGES[argv[0]][0])
    stage = argparse.ArgumentParser(prog=f"labkit {argv[0]}", description=module.__doc__.splitlines()[0])
    presets = list(getattr(module.CONFIG, "PRESETS", {}))
    stage.add_argument("--preset", choices=presets or None, help="named preset applied over the defaults")
    stage.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key (dotted for nested keys); repeatable. Keys: "
                            + ", ".join(config.keys(module.CONFIG)))
    aliases = getattr(module, "CLI_ALIASES", {})
    for flag, key in aliases.items():
        stage.add_argument(flag, dest=f"alias:{key}", metavar="VALUE", help=f"same as --set {key}=VALUE")
    if hasattr(module, "add_arguments"):
        module.add_arguments(stage)
    args = stage.parse_args(argv[1:])
    try:
        overrides = config.parse_assignments(args.set)
        for key in aliases.values():
            value = getattr(args, f"alias:{key}")
            if value is not None:
                overrides[key] = value
        cfg = config.resolve(module.CONFIG, args.preset, overrides)
        return module.run_cli(cfg, args)
    except config.UserError as e:
        print(f"labkit {argv[0]}: error: {e}", file=sys.stderr)
        return 2
