"""Looking at the data: the atomic library (notebook 01) and a synthesised data directory (notebook 02).

Text views (a card per atomic function, a record with its tests), two ipywidgets browsers over them, and the
plotly figures of the library's type graph and of the data splits. The numbers they show come from
`labkit.atomic` and `labkit.synth` (`synth.frame` loads a data directory, `synth.funnel` counts the rejection
funnel); nothing here computes a number those modules don't.
"""
from __future__ import annotations

from collections import Counter

import ipywidgets as widgets
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkit import atomic, synth, tasks
from labkit.atomic import TOPICS, TYPES, AtomicSpec
from labkit.viz.widgets import show_text


# --- the atomic library: a text card per function, a widget browser, the composition figure -------------------

def card(spec: AtomicSpec) -> str:
    """Everything about one function as plain text: phrasings, reference source, tests."""
    lines = [f"{spec.name}  [{spec.topic}]  {spec.signature}", "", "phrasings:"]
    lines += [f"  - {spec.describe(i)}" for i in range(len(spec.prompts))]
    lines += ["", spec.source, "tests:"]
    lines += [f"  {spec.name}({', '.join(map(repr, t['args']))}) == {t['expected']!r}" for t in spec.tests]
    return "\n".join(lines)


def atom_browser(specs: list[AtomicSpec]):
    """An ipywidgets browser: pick a topic, then a function, and read its card."""
    topic = widgets.Dropdown(options=sorted({s.topic for s in specs}, key=TOPICS.index), description="topic")
    name = widgets.Dropdown(description="function")
    shown = widgets.Output()

    def show_topic(_=None):
        name.options = [s.name for s in specs if s.topic == topic.value]
        name.value = name.options[0]

    def show_card(_=None):
        show_text(shown, card(next(s for s in specs if s.name == name.value)))

    topic.observe(show_topic, names="value")
    name.observe(show_card, names="value")
    show_topic()
    show_card()
    return widgets.VBox([widgets.HBox([topic, name]), shown])


def composition_figure(specs: list[AtomicSpec]):
    """Left: types as nodes, an arrow per (input type -> output type) with its number of functions.
    Right: the function-level adjacency (row f, column g: g can follow f), rows grouped by f's return type and
    columns by g's input type, so each compatible type pair shows up as a filled block."""
    flows = Counter((s.params[0][1], s.returns) for s in specs if len(s.params) == 1)
    # The four main types on a square, the others around it, so arrows between main types stay readable.
    pos = {"str": (-1, 1), "list[str]": (1, 1), "int": (-1, -1), "list[int]": (1, -1), "bool": (-2.4, 0),
           "float": (2.4, -1.9), "dict[str, int]": (0, 2.3), "list[list[int]]": (0, -2.3)}
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.1,
                        subplot_titles=("one-argument functions by input → output type",
                                        "which function g can follow which f"))
    for (a, b), k in flows.items():
        if a == b:
            continue
        (x0, y0), (x1, y1) = pos[a], pos[b]
        fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
                           showarrow=True, arrowhead=2, arrowwidth=0.8 + 0.4 * k, opacity=0.45, standoff=16)
        # The count sits two thirds along its arrow, so the labels of a -> b and b -> a don't overlap.
        fig.add_annotation(x=x0 + 0.65 * (x1 - x0), y=y0 + 0.65 * (y1 - y0), xref="x", yref="y",
                           text=str(k), showarrow=False, font=dict(size=11), bgcolor="white")
    used = [t for t in TYPES if any(t in pair for pair in flows)]
    fig.add_trace(go.Scatter(
        x=[pos[t][0] for t in used], y=[pos[t][1] for t in used], mode="markers+text",
        text=[f"<b>{t}</b> ↺{flows.get((t, t), 0)}" for t in used],
        textposition=["top center" if pos[t][1] >= 0 else "bottom center" for t in used],
        marker=dict(size=22, color="#9ecae1", line=dict(width=1, color="#3182bd")),
        hoverinfo="text", showlegend=False), row=1, col=1)
    rows = sorted(specs, key=lambda s: (TYPES.index(s.returns), s.name))
    cols = sorted((s for s in specs if len(s.params) == 1), key=lambda s: (TYPES.index(s.params[0][1]), s.name))
    z = [[1 if f.returns == g.params[0][1] else 0 for g in cols] for f in rows]
    fig.add_trace(go.Heatmap(
        z=z, showscale=False, colorscale=[[0, "#f4f4f4"], [1, "#3182bd"]], xgap=0.5, ygap=0.5,
        customdata=[[f"{f.name} → {g.name}" for g in cols] for f in rows],
        hovertemplate="%{customdata}<extra></extra>"), row=1, col=2)

    def block_ticks(types):  # one tick per type, at the middle of its block of rows/columns
        return dict(tickvals=[(types.index(t) + len(types) - 1 - types[::-1].index(t)) / 2 for t in used
                              if t in types], ticktext=[t for t in used if t in types])

    fig.update_xaxes(visible=False, range=[-3, 3], row=1, col=1)
    fig.update_yaxes(visible=False, range=[-2.9, 2.9], scaleanchor="x", row=1, col=1)
    fig.update_xaxes(title="g (next), by input type", tickangle=30,
                     **block_ticks([g.params[0][1] for g in cols]), row=1, col=2)
    fig.update_yaxes(title="f (first), by return type", autorange="reversed",
                     **block_ticks([f.returns for f in rows]), row=1, col=2)
    fig.update_layout(template="plotly_white", height=600, width=1200, margin=dict(t=60, l=20, r=70, b=40))
    return fig


# --- a data directory: the figures of its splits, a record as text, a record browser ------------------------------
# `records` is the frame of `synth.frame(out_dir)`: one row per record of every split, with its atoms' topics.

def depth_histogram(records):
    counts = records.groupby(["split", "depth"]).size().reset_index(name="functions")
    return px.bar(counts, x="depth", y="functions", color="split", barmode="group",
                  title="Depth (atomic steps) per split")


def topic_histogram(records):
    steps = records[records.split.isin(["atom_base", "train_C", "test_in_domain", "test_target"])]
    counts = steps.explode("topics").groupby(["split", "topics"]).size().reset_index(name="steps")
    return px.bar(counts, x="topics", y="steps", color="split", barmode="group",
                  title="Topics of the atomic steps per split")


def funnel_figure(manifest):
    stages = synth.funnel(manifest)
    return go.Figure(go.Funnel(y=list(stages), x=list(stages.values()), textinfo="value+percent initial"),
                     layout={"title": "Rejection funnel (all categories)"})


def pair_coverage(records, manifest):
    """Heatmap of adjacent atomic pairs: in train only, in the target test only, or both (never, by the rule,
    for held-out pairs). Atoms are grouped by topic along both axes."""
    specs = sorted(atomic.library(manifest["seed"], manifest["config"]["n_tests"]), key=lambda s: (s.topic, s.name))
    index = {s.name: i for i, s in enumerate(specs)}
    z = [[0] * len(specs) for _ in specs]
    for value, split in ((1, "train_C"), (2, "test_target")):
        for atoms in records[records.split == split].atoms:
            for f, g in zip(atoms, atoms[1:]):
                z[index[g]][index[f]] |= value
    names = [s.name for s in specs]
    scale = [[0, "white"], [0.25, "white"], [0.25, "#4c78a8"], [0.5, "#4c78a8"], [0.5, "#e45756"], [0.75, "#e45756"],
             [0.75, "#54a24b"], [1, "#54a24b"]]
    return go.Figure(go.Heatmap(z=z, x=names, y=names, zmin=-0.5, zmax=3.5, colorscale=scale,
                                colorbar={"tickvals": [0, 1, 2, 3], "ticktext": ["none", "train", "target", "both"]}),
                     layout={"title": "Adjacent pairs (first step → next step): train_C vs test_target",
                             "xaxis": {"title": "first", "showticklabels": False},
                             "yaxis": {"title": "next", "showticklabels": False}, "height": 600, "width": 650})


def show_record(row) -> str:
    tests = "\n".join(f"assert {row['entry_point']}(*{t['args']!r}) == {t['expected']!r}" for t in row["tests"][:3])
    return (f"# {row['split']} {row['kind']} depth={row['depth']} atoms={' -> '.join(row['atoms'])}\n"
            f"{row['prompt']}{row['solution']}\n{tests}\n")


def record_browser(records):
    """Pick a split and a record; shows prompt, reference and a few tests. Static output is fine headless."""
    split = widgets.Dropdown(options=list(tasks.SPLITS), value="test_target", description="split")
    index = widgets.IntSlider(0, 0, 0, description="record")
    out = widgets.Output()

    def update(*_):
        rows = records[records.split == split.value]
        index.max = max(len(rows) - 1, 0)
        text = show_record(rows.iloc[min(index.value, index.max)]) if len(rows) else "(empty split)"
        show_text(out, text)
    split.observe(update, "value")
    index.observe(update, "value")
    update()
    return widgets.VBox([widgets.HBox([split, index]), out])
