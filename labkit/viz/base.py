"""The base model's figures (notebook 03): its pretraining curves and what became of its programs.

The numbers come from a pretraining run's metrics.jsonl (the committed base keeps its own in
`labkit/base_model/`) and from `evaluate.evaluate_tasks`' metrics; nothing here computes one.
"""
from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

from labkit import runs


def loss_curves(run_dir) -> go.Figure:
    """Training loss and the evaluated losses (held-out standard library, atomic documents) per step."""
    df = runs.load_metrics(run_dir)
    loss = df[df.metric.isin(["train_loss", "loss"])]
    return px.line(loss, x="step", y="value", color="split", markers=True, log_y=True,
                   labels={"value": "loss (nats/token)"},
                   title="Pretraining loss: training, held-out standard library, atomic documents")


def outcome_bars(results: dict[str, dict[str, float]]) -> go.Figure:
    """Per split, the shares of sampled programs by outcome (status/* and error/* of an evaluation's metrics)."""
    shares = [{"split": split, "outcome": m.split("/", 1)[1], "share": v}
              for split, r in results.items() for m, v in r.items() if m.startswith(("status/", "error/"))]
    return px.bar(shares, x="split", y="share", color="outcome", title="What happened to the base model's programs")
