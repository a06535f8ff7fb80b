"""The report and the notebooks in a real browser (issue 15): Debian's Chromium, driven by
selenium through the system's chromedriver, and JupyterLab started by ``sparke-lab lab`` (the
command ``make lab`` runs).

Install the browser with ``apt-get install -y chromium chromium-driver`` (CI's .ci/run does);
without it every test here is skipped with that message. Nothing is downloaded at run time:
selenium gets the driver's path, so its driver manager never runs.

- the HTML report of a small compare run (made by the wheel check, from the installed wheel)
  opens with no console error, every image decoded; a screenshot is saved;
- JupyterLab on a loopback port with a token: notebooks 02 and 07 run all cells with no error
  output and their widgets render; moving a slider redraws the figure;
- a student notebook of assignment a1 (built by ``python -m sparke_lab.course build``):
  ``grader.check("q1")`` fails on the handed-out stub and passes once the answer is entered.

Screenshots go to $SPARKE_LAB_SCREENSHOTS (default: a temporary folder; the path is printed).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and Path(p).is_file()), None)
CHROMEDRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver")
                     if p and Path(p).is_file()), None)
INSTALL = ("needs Debian's Chromium and its driver: apt-get update && apt-get install -y "
           "chromium chromium-driver (as root; CI's .ci/run installs them), and selenium "
           "(pip install -e \".[test]\")")

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=INSTALL)

#: the flags this machine's closed network needs (no background connections) plus headless
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000"]
TOKEN = "sparke-lab-browser-test"
#: JupyterLab's own console noise that is not an error of the page under test
LAB_BENIGN = ("favicon", "Failed to load resource: the server responded with a status of 404",
              "/api/kernelspecs", "/lsp/status", "/api/workspaces")


def _screenshot_dir() -> Path:
    d = os.environ.get("SPARKE_LAB_SCREENSHOTS")
    path = Path(d) if d else Path(tempfile.gettempdir()) / "sparke-lab-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason=INSTALL)
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(600)
    yield driver
    driver.quit()


def _console_errors(driver, benign=()):
    return [e for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(b in e["message"] for b in benign)]


def _shot(driver, name: str) -> Path:
    path = _screenshot_dir() / name
    driver.save_screenshot(str(path))
    print(f"\n[browser] screenshot {path}")
    return path


# --------------------------------------------------------------------------- the report
def test_report_opens_with_every_image_decoded(browser, installed_wheel):
    report = Path(installed_wheel["report"])
    assert report.is_file(), installed_wheel.get("compare_tail")
    browser.get_log("browser")  # drop earlier entries
    browser.get(report.as_uri())
    state = browser.execute_script("""
        return [...document.images].map(im => ({alt: im.alt, complete: im.complete,
                 w: im.naturalWidth, h: im.naturalHeight}));""")
    assert len(state) >= 5, state  # grids, UMAP, spectra, mode galleries, scale curve...
    bad = [s for s in state if not (s["complete"] and s["w"] > 0 and s["h"] > 0)]
    assert not bad, bad
    assert browser.find_element("id", "metrics").is_displayed()
    metrics = json.loads(browser.execute_script(
        "return document.getElementById('metrics-json').textContent"))
    assert {"none", "sparke"} <= set(metrics)
    assert _console_errors(browser) == []
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 100, 8000))  # the whole page in one picture
    shot = _shot(browser, "report.png")
    browser.set_window_size(1400, 1000)
    assert shot.stat().st_size > 10_000


# --------------------------------------------------------------------------- JupyterLab
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`sparke-lab lab` on a copy of notebooks/ plus a built student notebook of a1."""
    pytest.importorskip("jupyterlab", reason="needs the [lab] extra: pip install -e \".[lab]\"")
    root = tmp_path_factory.mktemp("lab")
    nb_dir = root / "notebooks"
    shutil.copytree(ROOT / "notebooks", nb_dir, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    build = root / "assignments"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(root / "jupyter-runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(root / "workspaces"),
               JUPYTERLAB_SETTINGS_DIR=str(root / "lab-settings"))
    res = subprocess.run([sys.executable, "-m", "sparke_lab.course", "build", "a1_rke_and_vendi",
                          "--out", str(build)], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    shutil.copytree(build / "a1_rke_and_vendi" / "student", nb_dir / "student_a1")
    port = _free_port()
    log = open(root / "lab.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "sparke_lab.cli", "lab", str(nb_dir),
                               "--port", str(port), "--token", TOKEN, "--no-browser",
                               # window.jupyterapp: the menu's commands and the notebook model
                               "--jupyter-arg=--LabApp.expose_app_in_browser=True"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300  # a busy 2-core machine can take minutes
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            server.kill()
            pytest.fail(f"JupyterLab did not start:\n{(root / 'lab.log').read_text()[-3000:]}")
        time.sleep(0.5)
    # the token is required: without it the API refuses
    try:
        urllib.request.urlopen(f"{url}/api/contents", timeout=5)
        refused = False
    except urllib.error.HTTPError as exc:
        refused = exc.code == 403
    yield {"url": url, "root": nb_dir, "build": build / "a1_rke_and_vendi", "refused": refused,
           "log": root / "lab.log"}
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


OPEN_STATE = """
const app = window.jupyterapp;
const w = app && app.shell.currentWidget;
const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
return !!(w && w.context && w.context.path === arguments[0] && k && k.status === 'idle'
          && w.content.widgets.length > 0);
"""

START_RUN = """
// clicks Run > Run All Cells (the same command), or runs the given cells one after another
const [which] = arguments;
const app = window.jupyterapp, w = app.shell.currentWidget, nb = w.content;
if (which === 'all') { app.commands.execute('notebook:run-all-cells'); return; }
window.sparkeLabRun = (async () => {
  for (const i of which) {
    nb.activeCellIndex = i;
    await app.commands.execute('notebook:run-cell');
  }
})();
"""

RUN_STATE = """
const [which] = arguments;
const w = window.jupyterapp.shell.currentWidget, nb = w.content;
const targets = which === 'all' ? nb.widgets.filter(c => c.model.type === 'code')
                                : which.map(i => nb.widgets[i]);
const error = nb.widgets.some(c => c.model.type === 'code' &&
    c.model.outputs.toJSON().some(o => o.output_type === 'error'));
const ran = targets.every(c => c.model.executionCount !== null &&
                               !c.promptNode.textContent.includes('*'));
const idle = w.sessionContext.session.kernel.status === 'idle';
// run-all stops at an error (later cells never run); listed cells all run
return {finished: idle && (ran || (which === 'all' && error)),
        cells: nb.widgets.map((c, i) => ({i, type: c.model.type,
          count: c.model.type === 'code' ? c.model.executionCount : null,
          outputs: c.model.type === 'code' ? c.model.outputs.toJSON() : []}))};
"""


def _poll(fn, timeout_s: float, what: str, interval: float = 0.5):
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_s:.0f} s: {what}")


def _open(browser, lab, rel: str):
    browser.get(f"{lab['url']}/lab/tree/{rel}?token={TOKEN}")
    _poll(lambda: browser.execute_script(OPEN_STATE, rel), 240,
          f"{rel} open with an idle kernel; server log:\n{lab['log'].read_text()[-2000:]}")
    # JupyterLab's first-start question about its news feed: answer it as a student would
    browser.execute_script("""
        for (const b of document.querySelectorAll('.jp-toast-button, .jp-Notification-Toast button'))
            if (b.textContent.trim() === 'No') b.click();""")


def _run(browser, which, timeout_s: float):
    """Run cells (``"all"`` or a list of indices) and wait until the kernel is idle with every
    one of them executed, or an error output appeared; returns every cell's outputs."""
    if which != "all":
        # cleared first, so that "executed" means executed by this run
        browser.execute_script("""
            const nb = window.jupyterapp.shell.currentWidget.content;
            for (const i of arguments[0]) { nb.widgets[i].model.executionCount = null; }""", which)
    browser.execute_script(START_RUN, which)
    time.sleep(1.0)  # the kernel leaves idle once the first request is sent
    state = _poll(lambda: (lambda st: st if st["finished"] else None)(
        browser.execute_script(RUN_STATE, which)), timeout_s, f"running {which}")
    time.sleep(1.0)  # widget views render after the outputs arrive
    return browser.execute_script(RUN_STATE, which)["cells"]


def _errors(cells):
    out = []
    for c in cells:
        for o in c["outputs"]:
            if o["output_type"] == "error":
                out.append((c["i"], o["ename"], o["evalue"]))
            elif o["output_type"] == "stream" and o["name"] == "stderr" and "Traceback" in "".join(o["text"]):
                out.append((c["i"], "stderr", "".join(o["text"])[-500:]))
    return out


def _widget_state(browser):
    return browser.execute_script("""
        const nb = window.jupyterapp.shell.currentWidget.node;
        return {sliders: nb.querySelectorAll('.widget-slider').length,
                broken: [...nb.querySelectorAll('.jp-OutputArea-output')]
                          .filter(e => e.textContent.includes('Error displaying widget')).length};""")


FIGURE_OF_SLIDER = """
// the image shown in the same cell as the n-th slider: the LiveFigure's display
const n = arguments[0];
const slider = window.jupyterapp.shell.currentWidget.node.querySelectorAll('.widget-slider')[n];
const cell = slider.closest('.jp-Cell');
const img = [...cell.querySelectorAll('.jp-OutputArea-output img')].pop();
const readout = slider.querySelector('.widget-readout');
return {src: img ? img.src : null, readout: readout ? readout.textContent : null};
"""


def _move_slider(browser, n: int, presses: int = 4):
    from selenium.webdriver.common.keys import Keys
    handle = browser.execute_script(
        "return window.jupyterapp.shell.currentWidget.node.querySelectorAll('.widget-slider')"
        f"[{n}].querySelector('.noUi-handle')")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", handle)
    handle.click()
    for _ in range(presses):
        handle.send_keys(Keys.ARROW_RIGHT)


def _wait_for_change(browser, n: int, before: dict, timeout_s: float = 120):
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        now = browser.execute_script(FIGURE_OF_SLIDER, n)
        if now["src"] and now["src"] != before["src"] and now["readout"] != before["readout"]:
            return now
        time.sleep(0.5)
    return browser.execute_script(FIGURE_OF_SLIDER, n)


def test_lab_needs_the_token(lab):
    assert lab["refused"]


# key presses per slider: every press is a redraw, and 07's redraw samples the guided toy
@pytest.mark.parametrize("notebook, slider, presses", [("02_renyi_kernel_entropy.ipynb", 0, 4),
                                                       ("07_guided_sampling_2d.ipynb", 0, 1)])
def test_notebook_runs_in_jupyterlab_and_its_slider_redraws(browser, lab, notebook, slider, presses):
    _open(browser, lab, notebook)
    browser.get_log("browser")
    t0 = time.time()
    cells = _run(browser, "all", 900)
    run_s = time.time() - t0
    assert _errors(cells) == []
    code = [c for c in cells if c["type"] == "code"]
    assert code and all(c["count"] is not None for c in code)
    assert sum(1 for c in code for o in c["outputs"] if "image/png" in o.get("data", {})) >= 2
    widgets = _widget_state(browser)
    assert widgets["sliders"] > slider and widgets["broken"] == 0, widgets
    before = browser.execute_script(FIGURE_OF_SLIDER, slider)
    assert before["src"] and before["src"].startswith("data:image/png"), before
    _move_slider(browser, slider, presses)
    after = _wait_for_change(browser, slider, before)
    # each key press is a change; wait for the last redraw before reading and the screenshot
    _poll(lambda: browser.execute_script(
        "return window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
        " === 'idle'"), 300, "the kernel to finish redrawing")
    time.sleep(1.0)
    after = browser.execute_script(FIGURE_OF_SLIDER, slider)
    _shot(browser, notebook.replace(".ipynb", ".png"))
    assert after["readout"] != before["readout"], (before["readout"], after["readout"])
    assert after["src"] != before["src"], "the figure did not change after the slider moved"
    print(f"\n[browser] {notebook}: run all {run_s:.0f} s; slider {before['readout']} -> "
          f"{after['readout']}")
    errors = _console_errors(browser, LAB_BENIGN)
    assert errors == [], errors


def _answer_source(build: Path, marker: str) -> str:
    sol = json.loads((build / "autograder" / "a1_rke_and_vendi.ipynb").read_text())
    for cell in sol["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "code" and marker in src:
            return src  # the solved cell (otter keeps the handed-out prompt in a dead string)
    raise AssertionError(f"no solution cell with {marker!r}")


def _cell_index(cells, marker):
    return next(c["i"] for c in cells if c["type"] == "code" and marker in c["src"])


def test_student_notebook_grader_check(browser, lab):
    rel = "student_a1/a1_rke_and_vendi.ipynb"
    _open(browser, lab, rel)
    cells = browser.execute_script("""
        return window.jupyterapp.shell.currentWidget.content.widgets.map((c, i) =>
            ({i, type: c.model.type, src: c.model.sharedModel.getSource()}));""")
    init = _cell_index(cells, "otter.Notebook(")
    setup = _cell_index(cells, "def gaussian_kernel")
    answer = _cell_index(cells, "def rke_from_kernel")
    check = _cell_index(cells, 'grader.check("q1")')
    assert "NotImplementedError" in cells[answer]["src"]

    ran = _run(browser, [init, setup, answer, check], 300)
    stub_errors = _errors(ran)
    assert [e[:2] for e in stub_errors] == [(answer, "NotImplementedError")], stub_errors
    first = json.dumps(ran[check]["outputs"])
    assert "q1" in first and "failed" in first.lower() and "passed" not in first.lower(), first

    # the student types the answer (the solution of the instructor notebook), reruns, checks
    browser.execute_script("window.jupyterapp.shell.currentWidget.content.widgets[arguments[0]]"
                           ".model.sharedModel.setSource(arguments[1])",
                           answer, _answer_source(lab["build"], "def rke_from_kernel"))
    ran = _run(browser, [answer, check], 300)
    assert _errors(ran) == []
    second = json.dumps(ran[check]["outputs"])
    assert "q1" in second and "passed" in second.lower() and "failed" not in second.lower(), second
    browser.execute_script("""
        const w = window.jupyterapp.shell.currentWidget;
        w.content.activeCellIndex = arguments[1];
        w.content.widgets[arguments[0]].node.scrollIntoView();""", answer, check)
    _shot(browser, "student_a1_grader_check.png")
