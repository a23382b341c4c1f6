"""The dashboard of notebook 06: ipywidgets controls over the run figures of `labkit.viz.runs`.

Controls: runs, split, metric, smoothing, x-axis, and a run and step slider for the sample browser. Each plot
is an Output widget whose output is replaced by the redrawn figure on a control change (viz/widgets.py says
why it is replaced rather than captured); a headless run (papermill) draws the initial state once and never
needs the callbacks.
"""
from __future__ import annotations

from pathlib import Path

import ipywidgets as W
import pandas as pd

from labkit.viz.runs import (X_AXES, _default_heldout, atom_heatmap, curves, error_shares, gap, labels, load,
                             load_samples, samples_table, seed_bands)
from labkit.viz.widgets import show_figure


def dashboard(run_dirs):
    """ipywidgets controls over the run figures; returns the widget (display it, or let Jupyter show it)."""
    paths = [Path(r) for r in run_dirs]
    df = load(paths)
    names = labels(paths)
    by_name = {v: k for k, v in names.items()}
    metrics = sorted(df.metric.unique())
    splits = sorted(df.split.dropna().unique())
    x_axes = [k for k, v in X_AXES.items() if v in df.columns]
    default_metric = "pass@1" if "pass@1" in metrics else metrics[0]

    run_sel = W.SelectMultiple(options=list(names.values()), value=tuple(names.values()), description="runs",
                               rows=min(6, len(paths)))
    split_sel = W.Dropdown(options=splits, value=_default_heldout(df), description="split")
    metric_sel = W.Dropdown(options=metrics, value=default_metric, description="metric")
    x_sel = W.Dropdown(options=x_axes, value="step", description="x-axis")
    smooth_sel = W.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="smoothing")
    sample_run = W.Dropdown(options=list(names.values()), description="run")
    step_sel = W.SelectionSlider(options=[0], description="step", continuous_update=False)
    views = {k: W.Output() for k in ("curves", "bands", "gap", "heatmap", "errors", "samples")}

    def draw(key, fig):
        show_figure(views[key], fig)

    def selected():
        return [by_name[n] for n in run_sel.value] or paths[:1]

    def redraw_curves(_=None):
        args = dict(metric=metric_sel.value, x=x_sel.value, smoothing=smooth_sel.value)
        draw("curves", curves(selected(), splits=[split_sel.value], **args))
        draw("bands", seed_bands(selected(), split=split_sel.value, **args))
        draw("gap", gap(selected(), heldout_split=split_sel.value, **args))

    def redraw_run(_=None):
        run = by_name[sample_run.value]
        steps = sorted(load_samples(run).get("step", pd.Series(dtype=int)).unique().tolist()) or [0]
        step_sel.options = steps
        step_sel.value = steps[-1]
        draw("heatmap", atom_heatmap(run))
        draw("errors", error_shares(run))
        redraw_samples()

    def redraw_samples(_=None):
        draw("samples", samples_table(by_name[sample_run.value], step=step_sel.value))

    for w in (run_sel, split_sel, metric_sel, x_sel, smooth_sel):
        w.observe(redraw_curves, names="value")
    sample_run.observe(redraw_run, names="value")
    step_sel.observe(redraw_samples, names="value")
    redraw_curves()
    redraw_run()

    controls = W.HBox([run_sel, W.VBox([split_sel, metric_sel]), W.VBox([x_sel, smooth_sel])])
    tabs = W.Tab(children=[W.VBox([views["curves"], views["bands"]]), views["gap"],
                           W.VBox([views["heatmap"], views["errors"]]),
                           W.VBox([W.HBox([sample_run, step_sel]), views["samples"]])])
    for i, title in enumerate(["curves", "train vs held-out", "atoms and errors", "sample browser"]):
        tabs.set_title(i, title)
    return W.VBox([controls, tabs])
