"""pass@k against k (notebook 08): one panel per split, one line per model with a band of one standard error
over tasks, k on a log axis; and the solved-set bars (new abilities against the reference, and lost ones).
The numbers are `labkit.passk`'s (a passk.json); nothing here computes one."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkit.viz.runs import PALETTE


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def curves(result: dict, splits: list[str] | None = None) -> go.Figure:
    """Small multiples of pass@k vs k, a panel per split (default: every split and kind in the result)."""
    labels = list(result["models"])
    splits = splits or list(next(iter(result["models"].values())))
    cols = min(3, len(splits))
    rows = -(-len(splits) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=splits, shared_yaxes=True,
                        horizontal_spacing=0.05, vertical_spacing=0.14)
    for i, split in enumerate(splits):
        row, col = i // cols + 1, i % cols + 1
        for j, label in enumerate(labels):
            c, color = result["models"][label][split], PALETTE[j % len(PALETTE)]
            hi = [p + s for p, s in zip(c["pass"], c["se"])]
            lo = [max(0.0, p - s) for p, s in zip(c["pass"], c["se"])]
            fig.add_scatter(x=c["k"] + c["k"][::-1], y=hi + lo[::-1], mode="lines", fill="toself",
                            fillcolor=_rgba(color, 0.15),
                            line=dict(width=0), hoverinfo="skip", showlegend=False, legendgroup=label,
                            row=row, col=col)
            fig.add_scatter(x=c["k"], y=c["pass"], mode="lines+markers", name=label, legendgroup=label,
                            showlegend=i == 0, line=dict(color=color), row=row, col=col)
    fig.update_xaxes(type="log", dtick=0.30103)   # ticks at powers of two
    fig.update_xaxes(title_text="k (samples)", row=rows)
    fig.update_yaxes(range=[0, 1], title_text="pass@k", col=1)
    fig.update_layout(title=f"pass@k out to k={result['n']}: does the base catch up at large k?",
                      template="plotly_white", height=330 * rows, legend=dict(orientation="h", y=-0.12))
    return fig


def solved_bars(result: dict) -> go.Figure:
    """Per split, the share of tasks each model solves at some k that the model it is measured against never
    does (up), and the reverse (down)."""
    fig = go.Figure()
    for j, (label, other) in enumerate(result["against"].items()):
        splits = [s for s, by in result["solved"].items() if label in by]
        color = PALETTE[(j + 1) % len(PALETTE)]
        fig.add_bar(x=splits, y=[result["solved"][s][label]["new"] for s in splits],
                    name=f"{label} vs {other}: new", marker_color=color)
        fig.add_bar(x=splits, y=[-result["solved"][s][label]["lost"] for s in splits],
                    name=f"{label} vs {other}: lost", marker_color=_rgba(color, 0.45))
    fig.update_layout(barmode="relative", template="plotly_white", height=380, yaxis_title="share of the split's tasks",
                      title=f"tasks a model solves in some of {result['n']} samples that its start never solves (up), "
                            f"and the reverse (down)")
    return fig


def write(result: dict, out_dir, html: bool = False) -> list:
    """passk.png (the curves) and passk-solved.png beside a passk.json (the committed ones: into figures/)."""
    from labkit.viz import export
    return export.write({"passk": curves(result), "passk-solved": solved_bars(result)}, out_dir, html=html)
