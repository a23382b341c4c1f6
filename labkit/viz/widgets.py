"""Filling an ipywidgets `Output`: the one way the browsers (viz/data.py) and the dashboard show what they draw.

They set the widget's `outputs` trait to a ready output record instead of capturing into it (`with out:
print(...)` or `display(fig)`): output captured while a cell runs made papermill/nbclient hang now and then
(its Output-widget capture races the cell's end), while a set trait works the same with a kernel, headless and
in tests, and a headless run that never calls the callbacks still shows the initial state.
"""
from __future__ import annotations

import plotly.io as pio


def show_text(out, text: str) -> None:
    """Replace what `out` shows by `text` (as printed output)."""
    out.outputs = ({"output_type": "stream", "name": "stdout", "text": text + "\n"},)


def show_figure(out, fig) -> None:
    """Replace what `out` shows by a plotly figure (its MIME bundle; go.FigureWidget, tried first, showed empty
    axes in JupyterLab 4.6)."""
    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
    out.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
