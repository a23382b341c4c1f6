"""Regression runs: execute every notebook headless with papermill, then check its metrics against thresholds.

    python -m labkit regress --preset smoke|quick|full [--set notebooks_dir=...] [--set thresholds=FILE]

Notebooks `notebooks/NN_*.ipynb` run in order of NN, with the notebooks directory as working directory. Each
gets only the parameters its `parameters` cell declares (papermill lists them), from:

    preset     the preset name: smoke, quick or full
    out_dir    WORK/NN: where notebook NN writes its metrics.json and everything it produces
    work_dir   WORK: the shared root, so notebook NN finds an earlier notebook MM's outputs in WORK/MM

with WORK = out_dir/<preset> (default runs/regress/<preset>). A notebook that declares no `work_dir` finds the
same place as `Path(out_dir).parent`: its default out_dir ("../runs/notebooks/NN") follows the same layout, so
a notebook run by hand and under regress hand data to each other identically (e.g. 04 reads the base model
that 03 wrote into WORK/03). A failed notebook is a row with its error; the later ones still run (one that
needs the failed one's outputs fails too, saying what is missing).

Each notebook's metrics.json (nested keys flattened with dots) is compared with the versioned thresholds file
(labkit/regress_thresholds.json: preset -> notebook -> metric -> {"min": x, "max": y}); a listed metric that
is missing fails. The run prints a table (notebook, metric, value, threshold, ok), writes WORK/report.html and
WORK/results.json, writes the figures of every run directory the notebooks left (WORK/figures/NN/, PNG and
HTML), and exits 1 on any failed notebook or threshold.
"""
from __future__ import annotations

import dataclasses
import html
import json
import math
import shutil
import time
from pathlib import Path
from typing import ClassVar

from labkit.config import UserError

THRESHOLDS = Path(__file__).with_name("regress_thresholds.json")
HANDED_PARAMETERS = ("preset", "out_dir", "work_dir")


@dataclasses.dataclass
class RegressConfig:
    preset: str = "quick"                  # the preset every notebook runs at
    notebooks_dir: str = "notebooks"
    out_dir: str = "runs/regress"          # WORK = out_dir/<preset>: outputs, executed notebooks, report
    thresholds: str = str(THRESHOLDS)
    cell_timeout: int = 1800               # seconds one cell may run before the notebook counts as failed
    figures: bool = True                   # write the figures of the runs the notebooks left (WORK/figures)

    PRESETS: ClassVar[dict] = {"smoke": {"preset": "smoke"}, "quick": {"preset": "quick"},
                               "full": {"preset": "full"}}


CONFIG = RegressConfig
CLI_ALIASES = {"--out": "out_dir", "--notebooks": "notebooks_dir", "--thresholds": "thresholds"}


def environment() -> dict:
    """What a result depends on: the machine, the accelerator, the versions (00_overview and the report show it)."""
    import os
    import platform

    import torch
    import transformers

    from labkit import atomic

    specs = atomic.library()
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "gpu_count": torch.cuda.device_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "chromium": shutil.which("chromium") is not None, "atomic_functions": len(specs),
            "atomic_topics": len({s.topic for s in specs})}


def notebooks(notebooks_dir) -> list[Path]:
    found = sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise UserError(f"no notebooks NN_*.ipynb in {notebooks_dir}; pass --notebooks DIR")
    return found


def load_thresholds(path, preset: str) -> dict[str, dict[str, dict]]:
    path = Path(path)
    if not path.exists():
        raise UserError(f"thresholds file {path} does not exist; pass --thresholds FILE")
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"thresholds file {path} is not valid JSON: {e}") from None
    return table.get(preset, {})


def flatten(metrics: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested metrics become dotted names the thresholds file can use."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def within(value, bounds: dict | None) -> bool:
    if bounds is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return False
    return bounds.get("min", -math.inf) <= value <= bounds.get("max", math.inf)


def _bounds_text(bounds: dict | None) -> str:
    if bounds is None:
        return ""
    lo, hi = bounds.get("min"), bounds.get("max")
    return f"{lo} <= x <= {hi}" if lo is not None and hi is not None else f">= {lo}" if lo is not None \
        else f"<= {hi}"


def run_notebook(path: Path, work: Path, preset: str, cell_timeout: int) -> dict:
    """Execute one notebook; returns {notebook, seconds, error, metrics}. Never raises for a notebook's fault."""
    import papermill

    nn = path.name[:2]
    out_dir = work / nn
    shutil.rmtree(out_dir, ignore_errors=True)  # stale metrics of an earlier run must not pass for new ones
    out_dir.mkdir(parents=True)
    offered = {"preset": preset, "out_dir": str(out_dir), "work_dir": str(work)}
    declared = papermill.inspect_notebook(str(path))
    params = {k: v for k, v in offered.items() if k in declared}
    t0 = time.time()
    error = None
    try:
        papermill.execute_notebook(str(path), str(out_dir / path.name), parameters=params,
                                   cwd=str(path.parent), kernel_name="python3", progress_bar=True,
                                   execution_timeout=cell_timeout)
    except papermill.PapermillExecutionError as e:
        error = f"cell {e.exec_count}: {e.ename}: {e.evalue}".strip()
    except Exception as e:  # kernel death, timeout, bad notebook file: a failed row, and go on
        error = f"{type(e).__name__}: {e}"
    metrics_path = out_dir / "metrics.json"
    metrics = {}
    if metrics_path.exists():
        metrics = flatten(json.loads(metrics_path.read_text()))
    elif error is None:
        error = f"wrote no metrics.json into out_dir ({metrics_path})"
    return {"notebook": path.stem, "seconds": round(time.time() - t0, 1), "error": error, "metrics": metrics}


def rows_of(result: dict, thresholds: dict) -> list[dict]:
    """Table rows of one notebook: its run status, then every metric. A metric with a threshold reads "ok" or
    "FAIL"; one without reads "reported" (shown, guarding nothing)."""
    name = result["notebook"]
    rows = [{"notebook": name, "metric": "(run)", "value": result["error"] or f"ran in {result['seconds']} s",
             "threshold": "no error", "ok": result["error"] is None}]
    limits = thresholds.get(name, {})
    for metric in sorted(set(result["metrics"]) | set(limits)):
        value = result["metrics"].get(metric, "missing")
        bounds = limits.get(metric)
        rows.append({"notebook": name, "metric": metric, "value": value, "threshold": _bounds_text(bounds),
                     "ok": within(value, bounds) if metric in result["metrics"] else False,
                     "checked": bounds is not None})
    return rows


def row_verdict(row: dict) -> str:
    if not row["ok"]:
        return "FAIL"
    return "ok" if row.get("checked", True) else "reported"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    cols = ("notebook", "metric", "value", "threshold", "ok")
    cells = [[_fmt(r[c]) if c != "ok" else row_verdict(r) for c in cols] for r in rows]
    cells = [[c if len(c) <= 90 else c[:87] + "..." for c in row] for row in cells]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]

    def line(row):
        return "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(row) for row in cells])


def write_report(path: Path, preset: str, rows: list[dict], results: list[dict], figures: list[Path]) -> None:
    failed = [r for r in rows if not r["ok"]]
    verdict = f"{len(failed)} failing row(s)" if failed else "all notebooks ran and every threshold holds"
    body = "".join(
        f"<tr class={'ok' if r['ok'] else 'fail'}><td>{html.escape(r['notebook'])}</td>"
        f"<td>{html.escape(r['metric'])}</td><td>{html.escape(_fmt(r['value']))}</td>"
        f"<td>{html.escape(r['threshold'])}</td><td>{row_verdict(r)}</td></tr>" for r in rows)
    links = "".join(f"<li><a href='{r['notebook'][:2]}/{r['notebook']}.ipynb'>{r['notebook']}</a> "
                    f"({r['seconds']} s)</li>" for r in results)
    figs = "".join(f"<li><a href='{p.relative_to(path.parent)}'>{p.relative_to(path.parent)}</a></li>"
                   for p in figures if p.suffix == ".html")
    path.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>labkit regress {preset}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:13px}} tr.fail{{background:#fdecea}}
tr.ok td:last-child{{color:#2e7d32}} tr.fail td:last-child{{color:#c62828;font-weight:bold}}</style></head>
<body><h1>labkit regression run: preset {html.escape(preset)}</h1><p>{time.strftime('%Y-%m-%d %H:%M:%S')}
&middot; <b>{verdict}</b></p><table><tr><th>notebook</th><th>metric</th><th>value</th><th>threshold</th>
<th>ok</th></tr>{body}</table><h2>Executed notebooks</h2><ul>{links}</ul><h2>Figures</h2><ul>{figs}</ul>
</body></html>""")


def write_run_figures(work: Path, results: list[dict]) -> list[Path]:
    """The dashboard's figures for the run directories each notebook left (any folder with metrics.jsonl), into
    WORK/figures/NN/; one writer call, so one browser draws every PNG."""
    from labkit.viz import export

    cfg = export.FiguresConfig(png=export.chrome() is not None)
    figs = {}
    for result in results:
        nn = result["notebook"][:2]
        run_dirs = sorted(p.parent for p in (work / nn).rglob("metrics.jsonl"))
        if run_dirs:
            figs.update({f"{nn}/{stem}": fig for stem, fig in export.all_figures(run_dirs, cfg).items()})
    return export.write(figs, work / "figures", html=cfg.html, png=cfg.png, width=cfg.width, height=cfg.height)


def run(cfg: RegressConfig) -> int:
    paths = notebooks(cfg.notebooks_dir)
    thresholds = load_thresholds(cfg.thresholds, cfg.preset)
    work = Path(cfg.out_dir).resolve() / cfg.preset
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results, rows = [], []
    for i, path in enumerate(paths, 1):
        print(f"[{i}/{len(paths)}] {path.stem} (preset {cfg.preset}) ... elapsed {time.time() - t0:.0f} s",
              flush=True)
        result = run_notebook(path.resolve(), work, cfg.preset, cfg.cell_timeout)
        results.append(result)
        rows += rows_of(result, thresholds)
        status = "ok" if result["error"] is None else f"FAILED: {result['error'][:200]}"
        print(f"      {path.stem}: {status} in {result['seconds']} s", flush=True)
    figures = []
    if cfg.figures:
        print(f"[figures] run directories under {work} ... elapsed {time.time() - t0:.0f} s", flush=True)
        try:
            figures = write_run_figures(work, results)
        except Exception as e:  # a figure that fails to draw is a failed row, not a lost report
            rows.append({"notebook": "(figures)", "metric": "(run)", "value": f"{type(e).__name__}: {e}",
                         "threshold": "no error", "ok": False})
    write_report(work / "report.html", cfg.preset, rows, results, figures)
    (work / "results.json").write_text(json.dumps({"preset": cfg.preset, "results": results, "rows": rows},
                                                  indent=1, default=str))
    failed = [r for r in rows if not r["ok"]]
    print()
    print(format_table(rows))
    print(f"\n{len(paths)} notebooks, {len(figures)} figure files, {time.time() - t0:.0f} s; report: "
          f"{work / 'report.html'}")
    print(f"REGRESSION: {len(failed)} failing row(s)" if failed else "OK: every notebook ran, every threshold holds")
    return 1 if failed else 0


def run_cli(cfg: RegressConfig, args) -> int:
    return run(cfg)

