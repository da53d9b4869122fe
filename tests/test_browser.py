"""Notebook 07 and the book as a reader meets them: JupyterLab in headless Chromium (selenium, Debian's
chromium and chromium-driver; nothing is downloaded at run time).

JupyterLab serves a copy of notebooks/07_playground.ipynb with papermill-style injected parameters
(`interactive = True`, the smoke profile and a budget of seconds) on a free localhost port with a token. The
test runs all cells, changes the sampler in the panel (which also resets the step size), presses Run, and
checks that the progress bar moved, the grid of synthetic images loaded and the readout changed from its
waiting note to the measured A_f / A_r / MIA with the gap to the retrained model. It then opens two pages of
the built book over a local HTTP server and checks that every image loaded. Screenshots and what the readout
said go to runs/browser/. Server, kernel and browser are stopped whatever happens (tests/_lab.py), and the test
checks that every process the server started is gone. Without Chromium the test is skipped, with the reason.
"""
import contextlib
import json
import os
import time
from pathlib import Path

import nbformat
import pytest

import dsda
from dsda.browser import find_browser

import _lab  # noqa: E402  (tests/ is on sys.path: pytest's rootdir conftest)

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "runs" / "browser"
# the smoke profile with a budget of seconds: the notebook's own defaults are for the cpu profile
PARAMS = {"profile": "smoke", "interactive": True, "threads": 1, "nfe": 8, "n_per_class": 8, "steps": 20}
LAB_SETTINGS = {  # every cell in the page (no windowing, so selenium finds the panel) and no news prompt
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}
KERNEL_IDLE = """const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
return !!k && k.connectionStatus === 'connected' && k.status === 'idle';"""
# run all cells once the notebook's model and its session are ready (a command issued earlier can be a no-op)
RUN_ALL = """const w = window.jupyterapp.shell.currentWidget;
return Promise.all([w.context.ready, w.sessionContext.ready, w.revealed])
  .then(() => window.jupyterapp.commands.execute('notebook:run-all-cells')).then(r => String(r));"""
STARTED = "return Array.from(document.querySelectorAll('.jp-InputPrompt')).some(e => /[0-9*]/.test(e.textContent));"
IMAGES = "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]);"

BROWSER, WHY = find_browser()


def _wait(what: str, check, timeout_s: float, every_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not within {timeout_s} s")


def _playground_copy(folder: Path) -> Path:
    """notebooks/07_playground.ipynb without its outputs, PARAMS injected after its parameters cell (as papermill
    does: a cell tagged `injected-parameters`)."""
    nb = nbformat.read(ROOT / "notebooks" / "07_playground.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in PARAMS.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, injected)
    path = folder / "07_playground.ipynb"
    nbformat.write(nb, path)
    return path


def _settings(home: Path) -> None:
    for name, value in LAB_SETTINGS.items():
        path = home / "jupyterlab_settings_dir" / name     # JUPYTERLAB_SETTINGS_DIR (tests/_lab.py)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def _text(driver, css: str) -> str:
    found = driver.find_elements("css selector", css)
    return found[0].text if found else ""


def _run_playground(driver, lab) -> dict:
    from selenium.webdriver.support.ui import Select
    t0 = time.monotonic()
    driver.get(f"{lab.base}/lab/tree/07_playground.ipynb?token={lab.token}&reset")
    _wait("the notebook's kernel is idle", lambda: driver.execute_script(KERNEL_IDLE), 120)
    for _ in range(3):   # re-issued only if no cell started: a run that started is never repeated
        driver.execute_script(RUN_ALL)
        with contextlib.suppress(TimeoutError):
            _wait("the cells start", lambda: driver.execute_script(STARTED), 15)
            break
    _wait("the panel renders", lambda: "press Run" in _text(driver, ".dsda-readout"), 150)
    record = {"readout_before": _text(driver, ".dsda-readout"), "alpha_before": _text(driver, ".dsda-alpha .widget-readout")}
    driver.execute_script("document.querySelector('.dsda-run').scrollIntoView({block: 'center'});")
    driver.save_screenshot(str(SHOTS / "01_playground_widgets.png"))
    Select(driver.find_element("css selector", ".dsda-sampler select")).select_by_visible_text("sgld")
    _wait("the step size follows the sampler", lambda: _text(driver, ".dsda-alpha .widget-readout") != record["alpha_before"], 20)
    record["alpha_after"] = _text(driver, ".dsda-alpha .widget-readout")
    driver.find_element("css selector", "button.dsda-run").click()
    seen = set()

    def finished():
        seen.add(driver.execute_script("const b = document.querySelector('.dsda-progress .progress-bar');"
                                       "return b ? b.style.width : '';"))
        status = _text(driver, ".dsda-status")
        return status if status.startswith(("done", "error")) else None
    record["status"] = _wait("the run finishes", finished, 150, every_s=0.1)
    record.update(readout_after=_text(driver, ".dsda-readout"), progress_seen=sorted(seen - {""}),
                  grid_loaded=driver.execute_script("const i = document.querySelector('img.dsda-grid');"
                                                    "return !!i && i.complete && i.naturalWidth > 0;"),
                  seconds=round(time.monotonic() - t0, 1))
    driver.execute_script("document.querySelector('.dsda-readout').scrollIntoView({block: 'center'});")
    driver.save_screenshot(str(SHOTS / "02_playground_after_run.png"))
    return record


def _book_pages(driver, html: Path) -> dict:
    found = {}
    with _lab.static_server(html) as base:
        for i, page in enumerate(("index.html", "notebooks/02_accelerated_synthesis.html")):
            driver.get(f"{base}/{page}")
            _wait(f"{page} loads", lambda: driver.execute_script("return document.readyState") == "complete", 30)
            found[page] = _wait(f"{page}'s images load", lambda: (lambda imgs: imgs if imgs and all(ok for _, ok in imgs)
                                                                   else None)(driver.execute_script(IMAGES)), 30)
            driver.execute_script("document.images[0].scrollIntoView({block: 'start'});")   # a figure in the shot
            driver.save_screenshot(str(SHOTS / f"0{3 + i}_book_{Path(page).stem}.png"))
    return found


@pytest.mark.timeout(420)
def test_playground_and_book_in_headless_chromium(tmp_path, built_book):
    if BROWSER is None:
        pytest.skip(f"no headless browser: {WHY} (`python -m dsda prepare-browser` installs Debian's chromium and "
                    "chromium-driver as root; `make test` runs it)")
    index, problems = built_book
    assert problems == []
    dsda.original_model("smoke", progress=False)            # the kernel loads both from the cache (seconds to
    dsda.retrain_model("smoke", [3], progress=False)        # train here if missing), so the readout has a gap
    SHOTS.mkdir(parents=True, exist_ok=True)
    for stale in SHOTS.glob("*"):
        stale.unlink()
    (tmp_path / "lab").mkdir()
    _playground_copy(tmp_path / "lab")
    _settings(tmp_path / "home")
    # the kernel imports this checkout's dsda (PYTHONPATH), whatever the environment has installed
    env = {"DSDA_OUTPUT_DIR": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.monotonic()
    with _lab.chromium(BROWSER) as driver:
        with _lab.jupyter_lab(tmp_path / "lab", tmp_path / "home", env) as lab:
            try:
                record = _run_playground(driver, lab)
            except Exception:   # what the page and the server showed, for the one who reads the failure
                driver.save_screenshot(str(SHOTS / "failure.png"))
                (SHOTS / "failure_jupyterlab.log").write_text(lab.log.read_text(errors="replace"))
                raise
        record["book_images"] = _book_pages(driver, index.parent)
    record["test_seconds"] = round(time.monotonic() - t0, 1)
    (SHOTS / "report.json").write_text(json.dumps(record, indent=2))
    assert not [p for p in lab.started if _lab.alive(p)], "the server and its kernel are stopped"
    assert record["status"].startswith("done"), record
    assert record["alpha_before"] != record["alpha_after"] == "10.0", "sgld's own step size"
    before, after = record["readout_before"], record["readout_after"]
    assert "press Run" in before and after != before and "sampler sgld" in after
    assert "after unlearning" in after and "gap to retrained" in after and "cached or shipped" in after
    assert len(record["progress_seen"]) >= 2 and record["grid_loaded"]
    for page, images in record["book_images"].items():
        assert images and all(ok for _, ok in images), page


# ----------------------------------------------------------------------------- set-up (no browser needed)

def _fake_system(monkeypatch, installed: set, root: bool):
    from dsda import browser
    paths = {"chromium": "/usr/bin/chromium", "chromedriver": "/usr/bin/chromedriver", "apt-get": "/usr/bin/apt-get"}
    ran = []

    def run(cmd):
        ran.append(cmd)
        if cmd[:2] == ["apt-get", "install"]:
            installed.update({"chromium", "chromedriver"})
        return 0
    monkeypatch.setattr(browser, "_which", lambda p: paths[p] if p in installed else None)
    monkeypatch.setattr(browser, "_is_root", lambda: root)
    monkeypatch.setattr(browser, "_run", run)
    return browser, ran


def test_prepare_browser_installs_debians_packages_as_root(monkeypatch):
    browser, ran = _fake_system(monkeypatch, {"apt-get"}, root=True)
    found, reason = browser.prepare_browser()
    assert ran == [["apt-get", "update"], ["apt-get", "install", "-y", "chromium", "chromium-driver"]]
    assert found == browser.Browser("/usr/bin/chromium", "/usr/bin/chromedriver") and reason == ""


def test_prepare_browser_installs_nothing_when_present_and_says_why_it_cannot(monkeypatch):
    browser, ran = _fake_system(monkeypatch, {"chromium", "chromedriver", "apt-get"}, root=False)
    assert browser.prepare_browser()[0] is not None and ran == []
    browser, ran = _fake_system(monkeypatch, {"apt-get"}, root=False)
    found, reason = browser.prepare_browser()
    assert found is None and ran == []
    assert "not found: chromium, chromedriver" in reason and "needs root and apt-get" in reason
    found, reason = browser.prepare_browser(allow_apt=False)
    assert found is None and "--no-apt" in reason
