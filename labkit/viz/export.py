"""Figures to files: the `figures` stage (`python -m labkit figures RUN... --out DIR`) and the one HTML/PNG writer.

`write(figs, out_dir, ...)` is the only code in labkit that writes a figure to a file: the `figures` stage
(the dashboard's figures of run directories), the findings stage (`labkit.viz.findings`) and the regression
run (`labkit.regress`, the figures of the runs the notebooks left) all go through it. PNGs are drawn by kaleido
in a Chrome (Debian's `chromium`, installed by setup.sh), one browser started for all the figures of a call.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import warnings
from pathlib import Path

import plotly.graph_objects as go

from labkit.config import UserError
from labkit.viz.runs import atom_heatmap, curves, error_shares, gap, labels, seed_bands, seed_groups


# --- the writer ------------------------------------------------------------------------------------------------

def chrome() -> str | None:
    """The Chrome kaleido would draw with ($BROWSER_PATH, Debian's chromium or a google-chrome), or None."""
    return os.environ.get("BROWSER_PATH") or shutil.which("chromium") or shutil.which("google-chrome")


@contextlib.contextmanager
def _png_server():
    """One kaleido browser for every figure written inside: write_image alone starts a browser per figure."""
    import kaleido

    if not chrome():
        raise UserError("PNG figures need a Chrome for kaleido: run `bash setup.sh` (it installs Debian's "
                        "chromium) or `apt-get install -y chromium`, or pass --set png=false")
    if shutil.which("chromium"):
        os.environ.setdefault("BROWSER_PATH", shutil.which("chromium"))
    kaleido.start_sync_server(mathjax=False, silence_warnings=True)
    try:
        with warnings.catch_warnings():  # plotly always passes kopts={}, and kaleido warns about it
            warnings.filterwarnings("ignore", message="The kopts argument is ignored")
            yield
    finally:
        kaleido.stop_sync_server(silence_warnings=True)


def write(figs: dict[str, go.Figure], out_dir, html: bool = True, png: bool = True, width: int = 900,
          height: int = 500) -> list[Path]:
    """Each figure as OUT/STEM.html (standalone: plotly.js inlined, opens offline) and/or OUT/STEM.png (`width`
    wide; `height` for a figure that sets none). A stem may name a subfolder ("04/curves"). Returns the files
    written, the HTML ones first."""
    out = Path(out_dir)
    for stem in figs:
        (out / stem).parent.mkdir(parents=True, exist_ok=True)
    written = []
    if html:
        for stem, fig in figs.items():
            fig.write_html(out / f"{stem}.html", include_plotlyjs=True)
            written.append(out / f"{stem}.html")
    if png and figs:
        with _png_server():
            for stem, fig in figs.items():
                fig.write_image(out / f"{stem}.png", width=width, height=fig.layout.height or height)
                written.append(out / f"{stem}.png")
    return written


# --- `python -m labkit figures` ----------------------------------------------------------------------------------

@dataclasses.dataclass
class FiguresConfig:
    out_dir: str = "figures"
    metric: str = "pass@1"
    x: str = "step"
    smoothing: float = 0.0
    png: bool = True           # needs a Chrome (Debian `chromium`, installed by setup.sh) through kaleido
    html: bool = True          # standalone: plotly.js inlined, opens offline
    width: int = 900
    height: int = 500


CONFIG = FiguresConfig
CLI_ALIASES = {"--out": "out_dir"}


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (each with metrics.jsonl)")


def all_figures(run_dirs, cfg: FiguresConfig | None = None) -> dict[str, go.Figure]:
    """Every figure of the dashboard for these runs, by file stem."""
    cfg = cfg or FiguresConfig()
    paths = [Path(r) for r in run_dirs]
    args = dict(metric=cfg.metric, x=cfg.x, smoothing=cfg.smoothing)
    figs = {"curves": curves(paths, **args), "seed-bands": seed_bands(paths, **args)}
    for group, members in seed_groups(paths).items():
        figs[f"gap-{group}"] = gap(members, **args)
    for path, name in labels(paths).items():
        if (path / "samples").is_dir():
            figs[f"atoms-{name}"] = atom_heatmap(path)
            figs[f"errors-{name}"] = error_shares(path)
    return {stem.replace("/", "_"): fig for stem, fig in figs.items()}


def write_figures(run_dirs, cfg: FiguresConfig | None = None) -> list[Path]:
    """Write every figure as standalone HTML and/or PNG into cfg.out_dir; returns the files written."""
    cfg = cfg or FiguresConfig()
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    return write(all_figures(run_dirs, cfg), cfg.out_dir, html=cfg.html, png=cfg.png, width=cfg.width,
                 height=cfg.height)


def run_cli(cfg: FiguresConfig, args) -> int:
    written = write_figures(args.runs, cfg)
    print(f"wrote {len(written)} files to {cfg.out_dir}/: " + ", ".join(p.name for p in written))
    return 0
