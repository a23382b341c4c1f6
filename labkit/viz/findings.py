"""The findings stage: the experiment suite over seeds and its verdicts (labkit.experiments), then its figures.

    python -m labkit findings --preset paper --out runs/findings     # -> figures/findings.json + PNG figures

`labkit.experiments` runs the suite and decides the findings (findings.json); this module sits above it and
draws one figure per finding, each carrying its decision statistic: the numbers come from the run directories
(mean and min-max band over seeds) and from the findings (the handful N*, the matched points, the verdicts in
the titles). Small multiples instead of one crowded plot; each title says what to look for. Written as PNG by
`labkit.viz.export` into cfg.figures_dir when a Chrome is there (without one, findings.json alone). Notebook 07
calls `run(cfg)` as the stage does, and `figures(cfg, result)` to show a suite.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkit import experiments
from labkit.experiments import FindingsConfig, by_kind, e4_run, final, paths, values
from labkit.tasks import ATOMIC, KINDS
from labkit.viz import export
from labkit.viz.runs import PALETTE, seed_bands

CONFIG = FindingsConfig
CLI_ALIASES = {"--out": "out_dir", "--figures": "figures_dir"}
SFT_COLOR, RL_COLOR, CONTROL_COLOR = PALETTE[0], PALETTE[1], PALETTE[7]


def _runs(cfg: FindingsConfig, name: str) -> list[Path]:
    """The seeds' run directories of `name` that have metrics (complete or not)."""
    root = paths(cfg)[0]
    return [root / name / f"s{s}" for s in cfg.seeds if (root / name / f"s{s}" / "metrics.jsonl").exists()]


def _verdict(result: dict, key: str) -> str:
    return result.get(key, {}).get("verdict", "not run")


def _band(fig, runs: list[Path], split: str, color: str, col: int, show_legend: bool):
    """`seed_bands`' mean and min-max band of one split's pass@1 over the seeds, named and coloured by split, in
    one panel."""
    for trace in seed_bands(runs, split=split).data if runs else ():
        trace.update(name=split, legendgroup=split, showlegend=show_legend and trace.showlegend is not False)
        if trace.fill == "toself":
            trace.update(fillcolor=color)
        else:
            trace.update(line=dict(color=color))
        fig.add_trace(trace, row=1, col=col)


def _style(fig, verdict: str, question: str, height: int = 450) -> go.Figure:
    """The title: the verdict on the first line, what to look for on the second."""
    fig.update_layout(title=dict(text=f"<b>{verdict}</b><br><span style='font-size:12px'>{question}</span>"), template="plotly_white", height=height,
                      legend=dict(orientation="h", yanchor="top", y=-0.18, x=0), margin=dict(t=115, b=110))
    return fig


def f1_figure(cfg: FindingsConfig, result: dict) -> go.Figure:
    """Final target pass@1 against the number of composites, one panel per target kind: atomic + N (mean and
    min-max over seeds), atomic only (dashed) and synthetic only (a cross), the handful N* marked."""
    panels = ("all", *KINDS)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[f"test_target · {k}" for k in panels],
                        shared_yaxes=True)

    def value(run, kind):
        return final(run, "test_target") if kind == "all" else by_kind(run).get(kind)

    def stats(name, kind):
        vals = [v for r in _runs(cfg, name) if (v := value(r, kind)) is not None]
        return (np.mean(vals), min(vals), max(vals)) if vals else None

    for col, kind in enumerate(panels, 1):
        first = col == 1
        points = [(n, s) for n in cfg.sizes if (s := stats(f"e1/atomic+{n}", kind))]
        if points:
            xs, st = zip(*points)
            mean = np.array([s[0] for s in st])
            fig.add_scatter(x=xs, y=mean, mode="lines+markers", name="atomic + N composites", row=1, col=col,
                            line=dict(color=SFT_COLOR), legendgroup="mix", showlegend=first,
                            error_y=dict(type="data", symmetric=False, array=[s[2] for s in st] - mean,
                                         arrayminus=mean - [s[1] for s in st]))
        if (s := stats("e1/atomic-only", kind)):
            fig.add_hline(y=s[0], line=dict(color=CONTROL_COLOR, dash="dash"), row=1, col=col)
            fig.add_scatter(x=[None], y=[None], mode="lines", name="atomic only", line=dict(color=CONTROL_COLOR,
                            dash="dash"), row=1, col=col, legendgroup="atomic", showlegend=first)
        if (s := stats(f"e1/synthetic-only-{cfg.synthetic_only}", kind)):
            fig.add_scatter(x=[cfg.synthetic_only], y=[s[0]], mode="markers", name="synthetic only", row=1, col=col,
                            marker=dict(symbol="x", size=12, color=RL_COLOR), legendgroup="synth", showlegend=first)
        if "handful" in result.get("F1", {}):
            fig.add_vline(x=result["F1"]["handful"], line=dict(color="#999", dash="dot"), row=1, col=col)
    fig.update_xaxes(type="log", title="composites (log)")
    fig.update_yaxes(title="final greedy pass@1", rangemode="tozero", col=1)
    f1 = result.get("F1", {})
    return _style(fig, f"F1 — {_verdict(result, 'F1')} (statistic mean {f1.get('mean')}, sd {f1.get('sd')})",
                  f"atomic + N (blue) must beat atomic only (dashed) and synthetic only (x); dotted: the handful "
                  f"N* = {f1.get('handful', '?')}, where F1 is judged", height=420)


def f2_figure(cfg: FindingsConfig, result: dict) -> go.Figure:
    """Each seed's SFT start (RL's step 0) and RL end, on target and on RL's own prompts, same and fresh prompts."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["test_target pass@1 (F2's statistic)",
                                                        "train pass@1 (RL's own prompts: does RL learn?)"])
    for i, (name, label) in enumerate((("e2/rl-same", "same prompts as SFT"), ("e2/rl-fresh", "fresh prompts"))):
        color = (RL_COLOR, PALETTE[2])[i]
        for col, split in enumerate(("test_target", "train"), 1):
            for j, run in enumerate(_runs(cfg, name)):
                v = values(run, split)
                if len(v) > 1:
                    fig.add_scatter(x=[i * 3, i * 3 + 1], y=[v[0], v[-1]], mode="lines+markers", row=1, col=col,
                                    line=dict(color=color), name=label, legendgroup=label,
                                    showlegend=col == 1 and j == 0)
    ticks = dict(tickvals=[0, 1, 3, 4], ticktext=["SFT start", "RL end", "SFT start", "RL end"])
    fig.update_xaxes(**ticks)
    fig.update_yaxes(title="greedy pass@1", rangemode="tozero", col=1)
    return _style(fig, f"F2 — {_verdict(result, 'F2')} (statistic end − start, mean "
                       f"{result.get('F2', {}).get('mean')})",
                  "does RL after SFT raise target pass@1 above where SFT stopped? One line per seed")


def f3a_figure(cfg: FindingsConfig, result: dict) -> go.Figure:
    """Long SFT against RL from the base on the same prompts: train and held-out pass@1 over steps."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"SFT at constant lr ({cfg.long_steps} steps)",
                                                        f"RL from the base ({cfg.rl_base_steps} steps)"])
    for col, name in enumerate(("e3/sft-long", "e3/rl-base"), 1):
        runs = _runs(cfg, name)
        for split, color in (("train", CONTROL_COLOR), ("test_in_domain", PALETTE[2]), ("test_target", SFT_COLOR)):
            _band(fig, runs, split, color, col, show_legend=col == 1)
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="greedy pass@1", rangemode="tozero", col=1)
    f3a = result.get("F3a", {})
    drops = [d["drop"] for d in f3a.get("sft_drop", [])]
    return _style(fig, f"F3a — {_verdict(result, 'F3a')}",
                  f"does held-out pass@1 peak and fall under long SFT while train keeps rising, and not under RL? "
                  f"SFT's drop per seed {drops}")


def f3a_sweep_figure(sweep: dict) -> go.Figure:
    """The long-SFT sweep behind F3a's precondition (`figures/f3a_sweep.json`): each run's target and train
    pass@1 over steps, its window drop in the legend."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["test_target (held out)", "train (its own prompts)"])
    for i, (name, point) in enumerate(sweep["points"].items()):
        drop = point["test_target_window_drop"]
        composites = ", ".join(f"{split} ×{w:g}" for split, w in point["mixture"].items() if split not in ATOMIC)
        label = f"atomic + {composites}, seed {point['seed']}: drop {drop['drop']:.3f} ± {drop['se']:.3f}"
        for col, split in enumerate(("test_target", "train"), 1):
            steps, values_ = zip(*point["curves"][split])
            fig.add_trace(go.Scatter(x=steps, y=values_, mode="lines+markers", name=label, legendgroup=name,
                                     showlegend=col == 1, line=dict(color=PALETTE[i % len(PALETTE)])), row=1, col=col)
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="greedy pass@1", rangemode="tozero", col=1)
    return _style(fig, "F3a's precondition: does long SFT ever peak and fall on held-out tasks?",
                  f"{len(sweep['points'])} long SFT runs at constant lr; a drop of {experiments.PEAK_DROP} from the "
                  "peak window to the end would be one", height=500)


def f3b_figure(cfg: FindingsConfig, result: dict) -> go.Figure:
    """Forgetting against gain: SFT's path over its evaluations, RL's end point, the matched points circled."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["held-out standard-library loss rise (forgetting)",
                                                        "KL to the start on the training prompts"])
    for col, metric in enumerate((("general", "loss"), ("train", "kl_to_init")), 1):
        for name, color, label in (("e3/sft-long", SFT_COLOR, "SFT"), ("e3/rl-base", RL_COLOR, "RL from the base")):
            for j, run in enumerate(_runs(cfg, name)):
                train, y = values(run, "train"), values(run, *metric)
                if not train or len(y) != len(train):
                    continue
                y = [v - y[0] for v in y] if col == 1 else y
                fig.add_scatter(x=[t - train[0] for t in train], y=y, mode="lines+markers", row=1, col=col,
                                line=dict(color=color), name=label, legendgroup=label,
                                showlegend=col == 1 and j == 0)
    for m in result.get("F3b", {}).get("matched", []):
        for col, (sft, rl) in enumerate(((m["sft_forgetting"], m["rl_forgetting"]), (m["sft_kl"], m["rl_kl"])), 1):
            fig.add_scatter(x=[m["sft_gain"], m["rl_gain"]], y=[sft, rl], mode="markers", row=1, col=col,
                            marker=dict(size=14, symbol="circle-open", color="black"), showlegend=False)
    fig.update_xaxes(title="train pass@1 gain over the start")
    return _style(fig, f"F3b — {_verdict(result, 'F3b')} (statistic mean {result.get('F3b', {}).get('mean')})",
                  "at the same gain (circled), does SFT forget more than RL and move further from the base?")


def reward_figure(cfg: FindingsConfig, result: dict) -> go.Figure:
    """Final test_in_domain pass@1 per reward mode: the mean as a bar, each seed as a dot, the start dashed."""
    fig = go.Figure()
    modes = [m for m in experiments.MODES if m in cfg.reward_modes]
    starts = []
    for i, mode in enumerate(modes):
        runs = _runs(cfg, e4_run(cfg, mode))
        ends = [final(r, "test_in_domain") for r in runs if values(r, "test_in_domain")]
        starts += [values(r, "test_in_domain")[0] for r in runs if values(r, "test_in_domain")]
        fig.add_bar(x=[mode], y=[np.mean(ends) if ends else None], marker_color=PALETTE[i], showlegend=False)
        fig.add_scatter(x=[mode] * len(ends), y=ends, mode="markers", marker=dict(color="black", size=8),
                        name="one seed", legendgroup="seed", showlegend=i == 0)
    if starts:
        fig.add_hline(y=float(np.mean(starts)), line=dict(dash="dash", color=CONTROL_COLOR),
                      annotation_text="SFT start")
    fig.update_yaxes(title="final greedy pass@1 on test_in_domain", rangemode="tozero")
    order = " < ".join(result.get("reward_ordering", {}).get("observed_order", []))
    return _style(fig, f"Reward ablation — {_verdict(result, 'reward_ordering')}",
                  f"the paper's order is binary ≤ coarse ≤ fine ≤ adaptive; observed: {order}")


def figures(cfg: FindingsConfig, result: dict | None = None) -> dict:
    """One figure per finding whose runs exist, by file stem (`result`: the findings; decided here if None)."""
    result = experiments.findings(cfg) if result is None else result
    want = set(cfg.experiments)
    figs = {}
    if "E1" in want and _runs(cfg, f"e1/atomic+{cfg.rl_start}"):
        figs["f1-mixtures"] = f1_figure(cfg, result)
    if "E2" in want and _runs(cfg, "e2/rl-same"):
        figs["f2-rl-after-sft"] = f2_figure(cfg, result)
    if "E3" in want and _runs(cfg, "e3/sft-long"):
        figs["f3a-overfitting"] = f3a_figure(cfg, result)
        figs["f3b-forgetting"] = f3b_figure(cfg, result)
    if "E4" in want and any(_runs(cfg, e4_run(cfg, m)) for m in cfg.reward_modes):
        figs["reward-ordering"] = reward_figure(cfg, result)
    return figs


def write_figures(cfg: FindingsConfig, result: dict | None = None) -> list[Path]:
    """One PNG per figure into cfg.figures_dir, beside findings.json; none without a Chrome to draw them."""
    figs = figures(cfg, result)
    return export.write(figs, cfg.figures_dir, html=False, png=bool(figs and export.chrome()), width=1100,
                        height=480)


def run(cfg: FindingsConfig) -> dict:
    """Run (or finish) the suite, decide and write the findings (`experiments.run`), then write its figures."""
    result = experiments.run(cfg)
    write_figures(cfg, result)
    return result


def run_cli(cfg: FindingsConfig, args) -> int:
    result = run(cfg)
    print(f"findings: wrote {Path(cfg.figures_dir) / 'findings.json'}")
    return 1 if result["failed"] else 0
