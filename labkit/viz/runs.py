"""Run directories as frames, and the figures drawn from them: what notebooks 04-06 and the `figures` stage show.

Everything here reads run directories (config.json, metrics.jsonl, samples/step-N.jsonl, RL's
rollouts/step-N.jsonl.gz; see labkit/runs.py) and nothing else, so every figure a notebook shows can be rebuilt
later from the runs alone. Each view is a plain function returning a `go.Figure` (tested without widgets);
`labkit.viz.dashboard` wires the same functions to ipywidgets controls, and `labkit.viz.export` writes them to
files.

    curves(runs, metric, splits, x, smoothing)   pass@k (or any metric) against step/epoch/tokens/wall time
    seed_bands(runs, metric, split, x)           mean and min-max band over runs that differ only by seed
    gap(runs, train_split, heldout_split)        train vs held-out, the held-out peak marked (overfitting onset)
    atom_heatmap(run, split)                     pass rate per atomic function per evaluation step
    error_shares(run, split)                     outcome shares (pass / test failure / error types) over training
    samples_table(run, step, split, source=..., status=..., page=...)
                                                 one page of the programs sampled at an evaluation ("samples")
                                                 or at an RL training step ("rollouts"), filtered by verdict status
    continued(sft_run, rl_runs, metric, split)   SFT alone, and each RL run drawn on from the SFT step it started at
    final_bars(runs, metric, splits)             each run's last evaluation, grouped by split
"""
from __future__ import annotations

import glob
import html
import json
import math
import os
import re
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from labkit import runs
from labkit.config import UserError
from labkit.sandbox import STATUSES

# The x-axis choices: label shown to the user -> metrics.jsonl column.
X_AXES = {"step": "step", "epoch": "epoch", "tokens": "tokens", "wall time (s)": "wall_time"}
# Which split is the "held-out" one for the gap view, in order of preference.
HELDOUT_SPLITS = ("test_target", "test_in_domain", "atom_base")
# Config keys that differ between seeds of the same experiment without making it a different experiment.
NOT_EXPERIMENT_KEYS = {"seed", "out_dir", "out"}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22"]
OUTCOME_COLORS = {"pass": "#2ca02c", "fail": "#ff7f0e", "syntax_error": "#d62728", "timeout": "#7f7f7f"}
DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
# The sample browser's sources: label shown to the user -> what `samples_table` reads.
SOURCES = {"evaluation samples": "samples", "training rollouts": "rollouts"}
ALL = "all"   # the status filter that keeps every row
STATUS_FILTER = (ALL, *STATUSES)


# --- reading run directories -----------------------------------------------------------------------------

def labels(run_dirs) -> dict[Path, str]:
    """A short unique name per run: its directory name, with parent names added only where names clash."""
    paths = [Path(r) for r in run_dirs]
    depth = 1
    while True:
        names = {p: "/".join(p.resolve().parts[-depth:]) for p in paths}
        if len(set(names.values())) == len(paths) or depth > 8:
            return names
        depth += 1


def find_runs(patterns) -> list[Path]:
    """Run directories (folders with a metrics.jsonl) at or below each path or glob pattern, sorted."""
    found = set()
    for pattern in [patterns] if isinstance(patterns, (str, Path)) else patterns:
        for root in glob.glob(str(pattern), recursive=True):
            found |= {p.parent for p in Path(root).rglob("metrics.jsonl")}
    return sorted(found)


def load(run_dirs) -> pd.DataFrame:
    """All runs' metrics in one long DataFrame (one row per metric line), `run` holding each run's label."""
    paths = [Path(r) for r in run_dirs]
    missing = [str(p) for p in paths if not (p / "metrics.jsonl").exists()]
    if missing:
        raise UserError(f"not a run directory (no metrics.jsonl): {', '.join(missing)}; pass directories "
                        "written by `python -m labkit sft/rl --out RUN`")
    names = labels(paths)
    frames = [runs.load_metrics(p).assign(run=names[p]) for p in paths]
    df = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    if df is None:
        raise UserError(f"the runs have no metrics yet: {', '.join(map(str, paths))}")
    return df


def _atoms_by_task(run_dir) -> dict[str, list]:
    """task id -> atomic functions, from the data directory the run's config names (for samples without atoms)."""
    cfg_path = Path(run_dir) / "config.json"
    data_dir = json.loads(cfg_path.read_text()).get("data_dir") if cfg_path.exists() else None
    if not data_dir or not Path(data_dir).is_dir():
        return {}
    return {r["id"]: r.get("atoms", []) for f in Path(data_dir).glob("*.jsonl") for r in runs.read_jsonl(f)}


def load_samples(run_dir) -> pd.DataFrame:
    """Every sampled program of a run, one row each, with `step` (from the file name) and a flat `outcome`."""
    rows = []
    for path in sorted((Path(run_dir) / "samples").glob("step-*.jsonl")):
        step = int(path.stem.split("-")[1])
        rows += [{**r, "step": step} for r in runs.read_jsonl(path)]
    if rows and "atoms" not in rows[0]:
        atoms = _atoms_by_task(run_dir)
        rows = [{**r, "atoms": atoms.get(r.get("task_id"), [])} for r in rows]
    df = pd.DataFrame(rows)
    if len(df):
        df["outcome"] = [outcome(r) for r in rows]
    return df


def load_rollouts(run_dir, steps=None) -> pd.DataFrame:
    """RL's training rollouts (`runs.read_rollouts`: a row per sampled completion, `steps` only those steps),
    with the flat `outcome` of `load_samples`."""
    df = runs.read_rollouts(run_dir, steps)
    if len(df):
        df["outcome"] = [outcome(r) for r in df[["status", "error_type"]].to_dict("records")]
    return df


def table_steps(run_dir, source: str = "samples") -> list[int]:
    """The steps that have evaluation samples ("samples") or training rollouts ("rollouts"), from file names."""
    if source == "rollouts":
        return runs.rollout_steps(run_dir)
    return sorted(int(p.stem.split("-")[1]) for p in (Path(run_dir) / "samples").glob("step-*.jsonl"))


def browse(run_dir, source: str = "samples", step: int | None = None, split: str | None = None,
           status: str | None = None) -> tuple[pd.DataFrame, int | None]:
    """The rows of one step (default: the last) of a source, kept to `split` and verdict `status` (None or
    "all": every status). -> (rows, step)."""
    if source not in SOURCES.values():
        raise UserError(f"unknown source {source!r}; choose one of {', '.join(SOURCES.values())}")
    steps = table_steps(run_dir, source)
    step = (steps[-1] if steps else None) if step is None else step
    if step is None:
        return pd.DataFrame(), None
    df = load_rollouts(run_dir, [step]) if source == "rollouts" else load_samples(run_dir)
    if len(df):
        df = df[df.step == step]
    if len(df) and split is not None and "split" in df.columns:
        df = df[df.split == split]
    if len(df) and status not in (None, ALL) and "status" in df.columns:
        df = df[df.status == status]
    return df, step


def outcome(record: dict) -> str:
    """One label per verdict: pass, fail (a test failed), the runtime error's type, syntax_error, timeout, ..."""
    verdict = record.get("verdict", record)
    status = verdict.get("status", "unknown")
    if status == "runtime_error":
        return verdict.get("error_type") or "runtime_error"
    return status


def experiment(cfg: dict) -> dict:
    """A run's config without what differs between the seeds of one experiment: the seed, the output path, and
    the path of the run it started from (RL from the SFT run of its own seed), which stands in as that run's
    own experiment when its config can be read."""
    key = {k: v for k, v in cfg.items() if k not in NOT_EXPERIMENT_KEYS}
    start = Path(key["init"]) / "config.json" if isinstance(key.get("init"), str) else None
    if start is not None and start.exists():
        key["init"] = experiment(json.loads(start.read_text()))
    return key


def seed_groups(run_dirs) -> dict[str, list[Path]]:
    """Runs whose configs are equal except for the seed (and output path), grouped under a common label."""
    groups: dict[str, list[Path]] = {}
    for p in map(Path, run_dirs):
        cfg_path = p / "config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {"run": str(p)}
        groups.setdefault(json.dumps(experiment(cfg), sort_keys=True), []).append(p)
    names = labels([p for g in groups.values() for p in g])
    out = {}
    for members in groups.values():
        # "sft-s0", "sft-s1" -> "sft": the common prefix without a trailing seed marker
        prefix = re.sub(r"([-_/.]+(seed|s))?[-_/.]*$", "", os.path.commonprefix([names[p] for p in members]))
        prefix = prefix or names[members[0]]
        out[prefix if len(members) > 1 else names[members[0]]] = members
    return out


def smooth(values: pd.Series, weight: float) -> pd.Series:
    """Exponential moving average (TensorBoard-style): weight 0 leaves the curve as logged."""
    return values.ewm(alpha=1 - weight, adjust=True).mean() if weight > 0 else values


def _select(df: pd.DataFrame, metric: str, split: str | None, x: str) -> pd.DataFrame:
    col = X_AXES.get(x, x)
    if col not in df.columns:
        raise UserError(f"the runs log no {col!r}; choose the x-axis from "
                        f"{', '.join(k for k, v in X_AXES.items() if v in df.columns)}")
    sel = df[(df.metric == metric) & ((df.split == split) if split is not None else True)]
    return sel.dropna(subset=[col]).sort_values(["run", "step"])


# --- figures ---------------------------------------------------------------------------------------------

def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white",
                      height=420, margin=dict(l=60, r=20, t=60, b=50), legend=dict(font=dict(size=10)))
    return fig


def curves(run_dirs, metric: str = "pass@1", splits=None, x: str = "step", smoothing: float = 0.0) -> go.Figure:
    """One line per (run, split): colour = run, dash = split; error bars of one standard error where the runs
    log it (`<metric>_se`, e.g. greedy pass@1's over the evaluated tasks)."""
    df = load(run_dirs)
    splits = sorted(df.split.dropna().unique()) if splits is None else list(splits)
    col = X_AXES.get(x, x)
    fig = go.Figure()
    for i, run in enumerate(df.run.unique()):
        for j, split in enumerate(splits):
            sel = _select(df[df.run == run], metric, split, x)
            if len(sel):
                se = _select(df[df.run == run], f"{metric}_se", split, x).set_index("step").value
                error = dict(type="data", array=se.reindex(sel.step).tolist(), thickness=1) \
                    if smoothing == 0 and len(se) else None
                fig.add_scatter(x=sel[col], y=smooth(sel.value, smoothing), mode="lines+markers",
                                name=f"{run} · {split}", legendgroup=run, error_y=error,
                                line=dict(color=PALETTE[i % len(PALETTE)], dash=DASHES[j % len(DASHES)]))
    return _layout(fig, f"{metric} per split", x, metric)


def _mean_over(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """Mean, min and max of `value` over runs at each step (x is averaged too: wall time differs by seed)."""
    return df.groupby("step").agg(x=(col, "mean"), mean=("value", "mean"), lo=("value", "min"),
                                  hi=("value", "max"), n=("value", "size")).reset_index()


def seed_bands(run_dirs, metric: str = "pass@1", split: str | None = None, x: str = "step",
               smoothing: float = 0.0) -> go.Figure:
    """Mean line and min-max band per seed group (runs differing only by seed)."""
    df = load(run_dirs)
    split = split or _default_heldout(df)
    names = labels(run_dirs)
    col = X_AXES.get(x, x)
    fig = go.Figure()
    for i, (group, members) in enumerate(seed_groups(run_dirs).items()):
        sel = _select(df[df.run.isin([names[p] for p in members])], metric, split, x)
        if not len(sel):
            continue
        agg = _mean_over(sel, col)
        color = PALETTE[i % len(PALETTE)]
        band_x = pd.concat([agg.x, agg.x[::-1]])
        band_y = pd.concat([smooth(agg.hi, smoothing), smooth(agg.lo, smoothing)[::-1]])
        fig.add_scatter(x=band_x, y=band_y, fill="toself", mode="lines", fillcolor=color, opacity=0.2,
                        line=dict(width=0), hoverinfo="skip", showlegend=False, legendgroup=group)
        fig.add_scatter(x=agg.x, y=smooth(agg["mean"], smoothing), mode="lines+markers", legendgroup=group,
                        name=f"{group} (n={len(members)})", line=dict(color=color))
    return _layout(fig, f"{metric} on {split}: mean and min-max over seeds", x, metric)


def _default_heldout(df: pd.DataFrame) -> str | None:
    present = set(df.split.dropna())
    return next((s for s in HELDOUT_SPLITS if s in present), next(iter(sorted(present)), None))


def gap(run_dirs, metric: str = "pass@1", train_split: str = "train", heldout_split: str | None = None,
        x: str = "step", smoothing: float = 0.0) -> go.Figure:
    """Train vs held-out (mean over the given runs), the gap shaded, the held-out peak marked.

    A held-out peak before the last evaluation while the train curve keeps rising is the onset of
    overfitting (DESIGN §2.1, finding 3).
    """
    df = load(run_dirs)
    heldout_split = heldout_split or _default_heldout(df)
    col = X_AXES.get(x, x)
    fig = go.Figure()
    train = _mean_over(_select(df, metric, train_split, x), col)
    held = _mean_over(_select(df, metric, heldout_split, x), col)
    fig.add_scatter(x=train.x, y=smooth(train["mean"], smoothing), name=f"{train_split} (train)",
                    mode="lines+markers", line=dict(color=PALETTE[0]))
    fig.add_scatter(x=held.x, y=smooth(held["mean"], smoothing), name=f"{heldout_split} (held-out)",
                    mode="lines+markers", line=dict(color=PALETTE[1]), fill="tonexty",
                    fillcolor="rgba(214,39,40,0.08)")
    if len(held):
        ys = smooth(held["mean"], smoothing).reset_index(drop=True)
        peak = int(ys.idxmax())
        px, py = held.x.iloc[peak], ys.iloc[peak]
        onset = peak < len(ys) - 1 and ys.iloc[-1] < py
        fig.add_scatter(x=[px], y=[py], mode="markers", marker=dict(size=14, symbol="star", color="black"),
                        name="held-out peak" + (" (overfitting onset)" if onset else ""))
        fig.add_vline(x=px, line=dict(dash="dot", color="gray"))
    return _layout(fig, f"{metric}: train vs held-out gap", x, metric)


def atom_heatmap(run_dir, split: str | None = None) -> go.Figure:
    """Pass rate of the sampled programs that use each atomic function, per evaluation step."""
    df = load_samples(run_dir)
    if not len(df) or "atoms" not in df.columns:
        return _layout(go.Figure(), "no samples with atoms in this run", "step", "atomic function")
    if split is not None and "split" in df.columns:
        df = df[df.split == split]
    per_atom = df.assign(passed=df.outcome == "pass").explode("atoms").dropna(subset=["atoms"])
    table = per_atom.pivot_table(index="atoms", columns="step", values="passed", aggfunc="mean")
    # plotly draws the first row at the bottom: the hardest atoms go there
    table = table.loc[table.mean(axis=1).sort_values().index]
    fig = go.Figure(go.Heatmap(z=table.values, x=[str(s) for s in table.columns], y=list(table.index),
                               zmin=0, zmax=1, colorscale="RdYlGn", colorbar=dict(title="pass rate")))
    fig = _layout(fig, f"pass rate per atomic function{f' ({split})' if split else ''}", "step",
                  "atomic function")
    fig.update_layout(height=max(420, 14 * len(table) + 120), xaxis_type="category")
    return fig


def error_shares(run_dir, split: str | None = None) -> go.Figure:
    """Stacked shares of outcomes (pass, test failure, each runtime error type, syntax error, ...) per step."""
    df = load_samples(run_dir)
    if not len(df):
        return _layout(go.Figure(), "no samples in this run", "step", "share")
    if split is not None and "split" in df.columns:
        df = df[df.split == split]
    shares = pd.crosstab(df.step, df.outcome, normalize="index")
    order = sorted(shares.columns, key=lambda c: (c != "pass", c != "fail", c))
    others = iter(c for c in PALETTE * 3 if c not in OUTCOME_COLORS.values())  # error types: distinct colours
    fig = go.Figure()
    for name in order:
        fig.add_scatter(x=shares.index, y=shares[name], name=name, stackgroup="one", mode="lines",
                        line=dict(color=OUTCOME_COLORS.get(name) or next(others)))
    fig = _layout(fig, f"outcomes of sampled programs{f' ({split})' if split else ''}", "step", "share")
    fig.update_yaxes(range=[0, 1])
    return fig


def _code_cell(text: str, marked_line: int | None = None) -> str:
    """Plotly table cells speak a little HTML: escape the code, keep newlines and indentation; `marked_line`
    (1-based) is drawn bold in red (the line a `fine` reward penalised)."""
    lines = [html.escape(line).replace(" ", "\u00a0") for line in str(text or "").splitlines()]
    if marked_line is not None and 0 < marked_line <= len(lines):
        lines[marked_line - 1] = f'<b><span style="color:#d62728">{lines[marked_line - 1]}</span></b>'
    return "<br>".join(lines)


def _line(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def samples_table(run_dir, step: int | None = None, split: str | None = None, limit: int = 40, *,
                  source: str = "samples", status: str | None = None, page: int = 1) -> go.Figure:
    """One page (`limit` rows, `page` from 1) of the programs of one step (default: the last) with their
    verdicts: sampled at an evaluation (`source="samples"`) or at an RL training step (`"rollouts"`, with each
    completion's reward and, for the `fine` reward, its penalised line in red); `status` keeps one verdict
    status ("pass", "fail", "runtime_error", ...; None or "all": every one)."""
    label = {v: k for k, v in SOURCES.items()}.get(source, source)
    df, step = browse(run_dir, source, step, split, status)
    if step is None:
        return _layout(go.Figure(), f"no {'samples' if source == 'samples' else label} in this run", "", "")
    pages = max(1, math.ceil(len(df) / limit))
    page = min(max(1, page), pages)
    total, df = len(df), df.iloc[(page - 1) * limit:page * limit]
    blank = pd.Series([""] * len(df), index=df.index)
    code = df.get("completion", df.get("program", blank))
    if source == "rollouts":
        none = pd.Series([None] * len(df), index=df.index, dtype=object)
        marked = [_line(v) for v in df.get("penalty_line", none)]
        columns = {
            "task": df.get("task_id", blank).astype(str),
            "sample": df.get("sample", blank).astype(str),
            "reward": ["" if pd.isna(r) else f"{r:.2f}" for r in df.get("reward", none)],
            "verdict": df.get("outcome", blank),
            "error line": ["" if _line(v) is None else str(_line(v)) for v in df.get("error_line", none)],
            "completion": [_code_cell(c, m) for c, m in zip(code, marked)],
        }
        widths = [90, 50, 55, 90, 55, 360]
    else:
        columns = {
            "task": df.get("task_id", blank).astype(str),
            "split": df.get("split", blank).astype(str),
            "atoms": [", ".join(a) if isinstance(a, list) else "" for a in df.get("atoms", [None] * len(df))],
            "verdict": df.get("outcome", blank),
            "completion": [_code_cell(c) for c in code],
        }
        widths = [90, 70, 120, 70, 360]
    fill = [["#e8f5e9" if o == "pass" else "#fdecea" for o in columns["verdict"]]]
    fig = go.Figure(go.Table(
        columnwidth=widths,
        header=dict(values=[f"<b>{k}</b>" for k in columns], align="left"),
        cells=dict(values=[list(v) for v in columns.values()], align="left", fill_color=fill * len(columns),
                   font=dict(family="monospace", size=11))))
    kept = "" if status in (None, ALL) else f", status {status}"
    fig.update_layout(title=f"{'samples' if source == 'samples' else label} at step {step}{kept}: "
                            f"{len(df)} of {total} shown (page {page} of {pages})", height=600,
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig


# --- RL views (notebook 05) ----------------------------------------------------------------------------------

def _init_step(rl_run) -> int:
    """The SFT step an RL run started from, read from its config (0 for a base model or a plain model dir)."""
    cfg = json.loads((Path(rl_run) / "config.json").read_text())
    index = Path(cfg.get("init", "base")) / "checkpoints" / "index.json"
    if cfg.get("init", "base") == "base" or not index.exists():
        return 0
    name = json.loads(index.read_text()).get(cfg.get("init_checkpoint", "last"))
    return int(name.split("-")[1]) if name else 0


def continued(sft_run, rl_runs, metric: str = "pass@1", split: str = "test_target") -> go.Figure:
    """SFT alone, and each RL run drawn on from the SFT step it started at: does RL add what more SFT doesn't?"""
    paths = [Path(sft_run), *map(Path, rl_runs)]
    names = labels(paths)
    fig = go.Figure()
    for i, p in enumerate(paths):
        sel = _select(load([p]), metric, split, "step")
        fig.add_scatter(x=sel.step + (_init_step(p) if i else 0), y=sel.value, mode="lines+markers",
                        name=names[p], line=dict(color=PALETTE[i % len(PALETTE)], dash="dash" if i else "solid"))
    return _layout(fig, f"{metric} on {split}: SFT, then RL from its checkpoint", "SFT step, then RL step", metric)


def final_bars(run_dirs, metric: str = "pass@1", splits=None) -> go.Figure:
    """Each run's last evaluation, grouped by split (e.g. the reward-mode ablation)."""
    df = load(run_dirs)
    df = df[df.metric == metric]
    splits = sorted(df.split.dropna().unique()) if splits is None else list(splits)
    fig = go.Figure()
    for i, run in enumerate(df.run.unique()):
        sel = df[df.run == run]
        last = sel[sel.step == sel.step.max()].set_index("split").value
        fig.add_bar(x=splits, y=[float(last.get(s, float("nan"))) for s in splits], name=run,
                    marker_color=PALETTE[i % len(PALETTE)])
    fig.update_layout(barmode="group")
    return _layout(fig, f"{metric} at the last evaluation", "split", metric)
