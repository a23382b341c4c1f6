"""Every figure and widget of labkit: the only package that imports plotly or ipywidgets.

    runs.py       run directories read into frames (load, load_samples, seed_groups, find_runs) and the run
                  figures: curves, seed bands, train-held-out gap, per-atom heat map, error shares, samples
                  table, RL continued from its SFT start, final bars
    dashboard.py  the ipywidgets dashboard over the run figures (notebook 06)
    live.py       live curves while training: LiveCurves (a trainer callback), LiveRuns (runs in other processes)
    data.py       the atomic library and a synthesised data directory: cards, browsers, figures (notebooks 01, 02)
    findings.py   the findings stage (`labkit findings`): experiments' numbers, then the suite's figures
    export.py     the one HTML/PNG writer (kaleido), and the `figures` stage (`labkit figures RUN...`)
    widgets.py    filling an ipywidgets Output (shared by the browsers and the dashboard)

The arrows run one way: data (atomic, synth, tasks) and runs (runs, experiments) -> viz -> regress and the cli.
Nothing below viz imports it; the submodules are imported by name (`from labkit.viz import runs`), so showing
live curves does not load the dashboard's widgets.
"""
