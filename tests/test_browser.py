"""A real browser: JupyterLab on loopback, Debian's chromium driven by Playwright, the dashboard notebook run.

Opens a copy of notebooks/06_dashboard.ipynb whose parameters point at run directories fabricated here (the
dashboard only reads run directories), runs all cells, checks that the plots render, moves the smoothing slider
and checks that a curve changed, and saves a screenshot to runs/browser/dashboard.png. No browser download:
Playwright drives /usr/bin/chromium, which setup.sh installs.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = ROOT / "runs" / "browser" / "dashboard.png"
# Title of the first dashboard plot: pass@1 per split, one line per run.
CURVES = "pass@1 per split"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} missing: setup.sh installs Debian's chromium (apt-get)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on 127.0.0.1 with private config, data, settings and runtime dirs; yields its base URL."""
    home = tmp_path / "jupyter"
    (tmp_path / "root").mkdir()
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # The "get notified about Jupyter news?" pop-up would cover the notebook (news_url=None doesn't stop it).
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # Lab 4 only attaches the cells near the viewport: keep every cell in the page so the plots can be found.
    tracker = home / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "ws"),
           "OMP_WAIT_POLICY": "PASSIVE"}
    port = free_port()
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
                             f"--port={port}", "--port-retries=0", "--allow-root", "--IdentityProvider.token=",
                             "--ServerApp.password=", f"--ServerApp.root_dir={tmp_path / 'root'}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "lab.log").read_text()
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer /api/status in 60 s:\n" + (tmp_path / "lab.log").read_text())
        yield url
    finally:
        proc.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def curve_state(page) -> list:
    """(title, first trace's y values) of every plotly plot on the page."""
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(g => [
        (g.layout && g.layout.title && g.layout.title.text) || '',
        g._fullData && g._fullData.length ? Array.from(g._fullData[0].y || []) : []])""")


def test_dashboard_renders_and_reacts_in_chromium(lab, tmp_path, fake_run):
    from playwright.sync_api import sync_playwright

    root = tmp_path / "root"
    run_dirs = [str(fake_run(tmp_path / "runs" / f"sft-s{s}", seed=s)) for s in (0, 1)]
    out_dir = tmp_path / "out"
    papermill.execute_notebook(str(ROOT / "notebooks" / "06_dashboard.ipynb"), str(root / "06_dashboard.ipynb"),
                               parameters={"preset": "smoke", "out_dir": str(out_dir), "run_dirs": run_dirs},
                               prepare_only=True, progress_bar=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{lab}/lab/tree/06_dashboard.ipynb?reset")
            # The toolbar can say idle while the kernel is still starting: wait for the status bar's "Idle".
            page.locator("#jp-main-statusbar").get_by_text("Idle").wait_for(timeout=60_000)
            page.locator("#jp-MainMenu").get_by_text("Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            deadline = time.time() + 180
            while not (out_dir / "metrics.json").exists():
                assert time.time() < deadline, "the notebook did not finish in 180 s"
                time.sleep(0.5)
            # The kernel is done; the page may still be catching up with its messages: wait for every cell.
            page.wait_for_function("() => ![...document.querySelectorAll('.jp-InputArea-prompt')]"
                                   ".some(e => e.innerText.includes('*'))", timeout=120_000)
            plots = curve_state(page)
            # 6 dashboard plots (curves, seed bands, gap, heat map, errors, samples) and the 2 static figures
            assert len(plots) == 8, plots
            before = next(y for title, y in plots if title.startswith(CURVES))
            assert len(before) == 5

            # Move the smoothing slider with the keyboard, as a user could: the curve must change.
            handle = page.locator(".widget-slider", has_text="smoothing").locator(".noUi-handle")
            handle.scroll_into_view_if_needed()
            handle.click()
            for _ in range(10):
                handle.press("ArrowRight")
            page.wait_for_function(
                f"(before) => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.layout && "
                f"(g.layout.title.text || '').startsWith('{CURVES}') && "
                f"JSON.stringify(Array.from(g._fullData[0].y)) !== JSON.stringify(before))", arg=before,
                timeout=60_000)
            after = next(y for title, y in curve_state(page) if title.startswith(CURVES))
            assert after[0] == pytest.approx(before[0]) and after != pytest.approx(before)

            page.locator(".widget-slider", has_text="smoothing").scroll_into_view_if_needed()
        finally:  # a screenshot also when something failed: it shows what the browser saw
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
