"""Live training curves: a trainer callback that redraws a plotly figure in place in a notebook.

    live = LiveCurves("atomic + A")
    sft.train(cfg, callbacks=[live])          # the figure below the cell grows at every logged batch

A callback receives each batch of metric records as the trainer logs them (the same dicts that go to
metrics.jsonl). Runs in other processes (`jobs.run_jobs`, runs side by side) are followed through their
run directories instead: `LiveRuns({"atomic only": path, ...})` is the runner's `watch`. The figure is
re-displayed through an IPython display handle rather than a FigureWidget, so it needs no widget front end and
works the same in JupyterLab and in a headless papermill run (one output per figure, updated in place).
Figures of finished runs are drawn from their run directories by `labkit.viz.runs`.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkit.runs import read_jsonl
from labkit.viz.runs import DASHES, PALETTE


class LiveCurves:
    """Left: `metric` per evaluated split; right: the training loss. x is the optimizer step."""

    def __init__(self, title: str = "", metric: str = "pass@1", loss: str = "train_loss"):
        self.title, self.metric, self.loss = title, metric, loss
        self.points: dict[str, list[tuple[int, float]]] = defaultdict(list)   # series name -> (step, value)
        self.handle = None

    def __call__(self, records: list[dict]) -> None:
        new = False
        for r in records:
            if r["metric"] == self.metric:
                self.points[r["split"]].append((r["step"], r["value"]))
                new = True
            elif r["metric"] == self.loss:
                self.points[self.loss].append((r["step"], r["value"]))
                new = True
        if new:
            self.show()

    def figure(self) -> go.Figure:
        fig = make_subplots(rows=1, cols=2, subplot_titles=(self.metric, self.loss))
        splits = [s for s in self.points if s != self.loss]
        for i, split in enumerate(splits):
            steps, values = zip(*self.points[split])
            fig.add_scatter(x=steps, y=values, name=split, mode="lines+markers", row=1, col=1,
                            line=dict(color=PALETTE[i % len(PALETTE)], dash=DASHES[i % len(DASHES)]))
        if self.points[self.loss]:
            steps, values = zip(*self.points[self.loss])
            fig.add_scatter(x=steps, y=values, name=self.loss, mode="lines", row=1, col=2,
                            line=dict(color="gray"))
        fig.update_yaxes(range=[-0.02, 1.02], row=1, col=1)
        fig.update_xaxes(title_text="step")
        fig.update_layout(title=self.title, template="plotly_white", height=340,
                          margin=dict(l=50, r=20, t=60, b=40))
        return fig

    def show(self) -> None:
        from IPython.display import display

        # The figure's MIME bundle, not the figure: IPython hands a plotly Figure to its own `_ipython_display_`,
        # which ignores display_id, so every update would append a new figure instead of redrawing this one.
        bundle = self.figure()._repr_mimebundle_()
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)


class LiveRuns:
    """One `LiveCurves` per run directory, redrawn whenever its metrics.jsonl has changed since the last call."""

    def __init__(self, runs: dict[str, str | Path], metric: str = "pass@1", loss: str = "train_loss"):
        self.curves = {title: LiveCurves(title, metric, loss) for title in runs}
        self.paths = {title: Path(path) / "metrics.jsonl" for title, path in runs.items()}
        self.seen = dict.fromkeys(runs, 0)

    def __call__(self) -> None:
        for title, path in self.paths.items():
            records = read_jsonl(path) if path.exists() else []
            if len(records) != self.seen[title]:   # new lines, or fewer: a resumed run dropped its tail
                self.seen[title] = len(records)
                curves = self.curves[title]
                curves.points.clear()
                curves(records)
