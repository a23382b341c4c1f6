"""The dashboard of notebook 06: ipywidgets controls over the run figures of `labkit.viz.runs`.

Controls: runs, split, metric, smoothing, x-axis, and for the sample browser a run, a step slider, the source
(evaluation samples, or an RL run's training rollouts), a verdict-status filter and a page. Each plot
is an Output widget whose output is replaced by the redrawn figure on a control change (viz/widgets.py says
why it is replaced rather than captured); a headless run (papermill) draws the initial state once and never
needs the callbacks.
"""
from __future__ import annotations

from pathlib import Path

import math

import ipywidgets as W

from labkit.viz.runs import (ALL, SOURCES, STATUS_FILTER, X_AXES, _default_heldout, atom_heatmap, browse, curves,
                             error_shares, gap, labels, load, samples_table, seed_bands, table_steps)
from labkit.viz.widgets import show_figure

PAGE = 40   # rows per page of the sample browser


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
    source_sel = W.Dropdown(options=list(SOURCES), value="evaluation samples", description="source")
    status_sel = W.Dropdown(options=list(STATUS_FILTER), value=ALL, description="status")
    page_sel = W.BoundedIntText(value=1, min=1, max=1, description="page")
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

    busy = []   # the browser's own changes to its controls (new options, page bounds) draw nothing more

    def quietly(fn):
        def handler(_=None):
            if not busy:
                busy.append(True)
                try:
                    fn()
                finally:
                    busy.clear()
        return handler

    def redraw_run():
        run = by_name[sample_run.value]
        draw("heatmap", atom_heatmap(run))
        draw("errors", error_shares(run))
        redraw_steps()

    def redraw_steps():
        steps = table_steps(by_name[sample_run.value], SOURCES[source_sel.value]) or [0]
        step_sel.options = steps
        step_sel.value = steps[-1]
        redraw_samples(first_page=True)

    def redraw_samples(first_page=False):
        run, source = by_name[sample_run.value], SOURCES[source_sel.value]
        rows, _ = browse(run, source, step_sel.value, status=status_sel.value)
        page_sel.max = max(1, math.ceil(len(rows) / PAGE))
        if first_page:
            page_sel.value = 1
        draw("samples", samples_table(run, step=step_sel.value, limit=PAGE, source=source, status=status_sel.value,
                                      page=page_sel.value))

    for w in (run_sel, split_sel, metric_sel, x_sel, smooth_sel):
        w.observe(redraw_curves, names="value")
    sample_run.observe(quietly(redraw_run), names="value")
    source_sel.observe(quietly(redraw_steps), names="value")
    step_sel.observe(quietly(lambda: redraw_samples(first_page=True)), names="value")
    status_sel.observe(quietly(lambda: redraw_samples(first_page=True)), names="value")
    page_sel.observe(quietly(redraw_samples), names="value")
    redraw_curves()
    quietly(redraw_run)()

    controls = W.HBox([run_sel, W.VBox([split_sel, metric_sel]), W.VBox([x_sel, smooth_sel])])
    tabs = W.Tab(children=[W.VBox([views["curves"], views["bands"]]), views["gap"],
                           W.VBox([views["heatmap"], views["errors"]]),
                           W.VBox([W.HBox([sample_run, step_sel, source_sel, status_sel, page_sel],
                                          layout=W.Layout(flex_flow="row wrap")), views["samples"]])])
    for i, title in enumerate(["curves", "train vs held-out", "atoms and errors", "sample browser"]):
        tabs.set_title(i, title)
    return W.VBox([controls, tabs])
