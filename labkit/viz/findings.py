"""The findings stage: the experiment suite over seeds and its verdicts (labkit.experiments), then its figures.

    python -m labkit findings --preset paper --out runs/findings     # -> figures/findings.json + PNG figures

`labkit.experiments` runs the suite and decides the findings (findings.json); this module sits above it and
draws the suite's figures from the run directories alone: the E1 size sweep by kind, and seed bands and gaps
of the run figures (`labkit.viz.runs`), written as PNG by `labkit.viz.export` into cfg.figures_dir when a
Chrome is there (without one, findings.json alone). Notebook 07 calls `run(cfg)` as the stage does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from labkit import experiments
from labkit.experiments import FindingsConfig, e1_runs, kind_pass1, paths
from labkit.tasks import KINDS
from labkit.viz import export
from labkit.viz.runs import PALETTE, gap, seed_bands

CONFIG = FindingsConfig
CLI_ALIASES = {"--out": "out_dir", "--figures": "figures_dir"}


def _complete(cfg: FindingsConfig, name: str, steps: int) -> list[Path]:
    """The run directories of `name` (one per seed) that reached `steps`."""
    root = paths(cfg)[0]
    return [root / name / f"s{s}" for s in cfg.seeds if (root / name / f"s{s}" / experiments._ckpt(steps)).exists()]


def sweep_figure(cfg: FindingsConfig):
    """E1: final target pass@1 against the number of composites beside atomic data, per kind (mean and min-max
    over seeds); synthetic only as crosses."""
    data = paths(cfg)[1]

    def value(run, kind):
        if kind == "all":
            return experiments._final(run, "test_target")
        return kind_pass1(run, data, cfg.sft_steps).get(kind)

    fig = go.Figure()
    names = {0: "e1/atomic-only", **{n: f"e1/atomic+{n}" for n in cfg.sizes}}
    for i, kind in enumerate(("all", *KINDS)):
        color = PALETTE[i % len(PALETTE)]
        xs, mean, lo, hi = [], [], [], []
        for n, name in names.items():
            vals = [v for r in _complete(cfg, name, cfg.sft_steps) if (v := value(r, kind)) is not None]
            if vals:
                xs.append(n), mean.append(np.mean(vals)), lo.append(min(vals)), hi.append(max(vals))
        fig.add_scatter(x=xs, y=mean, mode="lines+markers", name=f"atomic + N · {kind}", line=dict(color=color),
                        error_y=dict(type="data", symmetric=False, array=np.subtract(hi, mean),
                                     arrayminus=np.subtract(mean, lo)))
        synth = _complete(cfg, f"e1/synthetic-only-{cfg.synthetic_only}", cfg.sft_steps)
        vals = [v for r in synth if (v := value(r, kind)) is not None]
        if vals:
            fig.add_scatter(x=[cfg.synthetic_only], y=[np.mean(vals)], mode="markers", name=f"synthetic only · {kind}",
                            marker=dict(symbol="x", size=12, color=color))
    fig.update_xaxes(title="synthetic composites in the SFT data (0 = atomic only)")
    fig.update_yaxes(title="final greedy pass@1 on test_target", rangemode="tozero")
    fig.update_layout(title="E1: data mixture — target-domain pass@1 by kind (mean, min-max over seeds)",
                      template="plotly_white", height=450)
    return fig


def figures(cfg: FindingsConfig) -> dict:
    """The figures of the suite by file stem, built from the run directories alone."""
    def members(name):   # the seeds' run directories that have metrics (complete or not)
        root = paths(cfg)[0]
        return [root / name / f"s{s}" for s in cfg.seeds if (root / name / f"s{s}" / "metrics.jsonl").exists()]

    figs = {}
    if "E1" in cfg.experiments and any(members(f"e1/{n}") for n in e1_runs(cfg)):
        figs["e1-sweep"] = sweep_figure(cfg)
        figs["e1-target-curves"] = seed_bands([p for n in e1_runs(cfg) for p in members(f"e1/{n}")],
                                              split="test_target")
    if "E2" in cfg.experiments and members("e2/rl-same"):
        figs["e2-target-curves"] = seed_bands(members("e2/rl-same") + members("e2/rl-fresh"), split="test_target")
        figs["e2-train-curves"] = seed_bands(members("e2/rl-same") + members("e2/rl-fresh"), split="train")
    if "E3" in cfg.experiments:
        for name in (f"e1/atomic+{cfg.handful}", "e3/rl-base"):
            if members(name):
                figs[f"{name.replace('/', '-')}-gap"] = gap(members(name), heldout_split="test_target")
    if "E4" in cfg.experiments and any(members(f"e4/{m}") for m in cfg.reward_modes):
        ablation = [p for m in cfg.reward_modes for p in members(f"e4/{m}")]
        figs["e4-reward-modes"] = seed_bands(ablation, split="test_in_domain")
    return figs


def write_figures(cfg: FindingsConfig) -> list[Path]:
    """One PNG per figure into cfg.figures_dir, beside findings.json; none without a Chrome to draw them."""
    figs = figures(cfg)
    return export.write(figs, cfg.figures_dir, html=False, png=bool(figs and export.chrome()), width=900,
                        height=450)


def run(cfg: FindingsConfig) -> dict:
    """Run (or finish) the suite, decide and write the findings (`experiments.run`), then write its figures."""
    result = experiments.run(cfg)
    write_figures(cfg)
    return result


def run_cli(cfg: FindingsConfig, args) -> int:
    result = run(cfg)
    print(f"findings: wrote {Path(cfg.figures_dir) / 'findings.json'}")
    return 1 if result["failed"] else 0
