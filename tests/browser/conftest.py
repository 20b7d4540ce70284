"""Fixtures of the real-browser tests: the twin, JupyterLab on loopback and Chromium via Playwright.

- ``chromium``: Debian's ``/usr/bin/chromium``; missing -> the test FAILS saying to install it
  (``apt-get install chromium``; ``scripts/test`` does) — Playwright's bundled browser download does not
  work here (docs/FACTS.md "Notebook stack").
- ``browser_twin``: the twin in its "before" state with ``FALKIT_STATE_DIR`` in a temp dir; stopped
  with ``supervisor.down`` at the end.
- ``lab_dir``: copies of the notebooks under test in a temp dir (the browser saves notebooks; the
  repository's stay untouched), their parameters cell rewritten to an absolute ``params`` path;
  20-vms gets a ``lab.dashboard()`` cell if its source does not have one yet.
- ``jupyter``: :func:`falkit.runbook.jupyter.start_lab` on 127.0.0.1, random port and token, all Jupyter
  state (and ``HOME``) in a temp dir, notebook windowing off (every cell stays in the DOM).
- ``page``: headless Chromium (``--no-sandbox --disable-gpu --disable-background-networking
  --disable-component-update --disable-sync --no-first-run --no-proxy-server``) with the same
  isolated ``HOME``/``XDG_*``; a route handler aborts every request whose host is not
  127.0.0.1/localhost and records it in ``page.blocked``.
- Screenshots go to ``outputs/browser/`` (git-ignored); ``shots`` is that directory; a failing
  test leaves ``FAILED-<test>.png`` there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import FAL, ROOT

CHROMIUM = Path("/usr/bin/chromium")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost"}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--no-proxy-server", "--disable-dev-shm-usage"]
NOTEBOOKS = ("00-preflight", "20-vms")
OPTIONS = {"20-vms": {"allow_disruptive": True, "allow_destructive": False}}


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser test needs Debian's chromium — run "
                    f"`apt-get install chromium` (scripts/test, the README's test command, does); Playwright's bundled browser is not used")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser_state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("falkit-browser")


@pytest.fixture(scope="module")
def browser_twin(browser_state):
    from falkit.twin import supervisor

    base = browser_state / "falkit-state"
    conn = supervisor.up(str(FAL), state="before", state_dir=base / "twin")
    try:
        yield base, conn
    finally:
        supervisor.down(base / "twin")


def parameterize_copy(src: Path, dst: Path, options: dict | None, dashboard: bool = False) -> None:
    """Copy a notebook, its parameters cell set to an absolute ``params`` (and ``options``); with
    ``dashboard``, a ``lab.dashboard()`` cell after ``runbook.open`` unless the notebook has one."""
    nb = json.loads(src.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in (c.get("metadata") or {}).get("tags", []))
    lines = [f"params = {str(FAL)!r}", 'target = "twin"', "apply = False", f"options = {options or {}!r}"]
    cell["source"] = "\n".join(lines)
    if dashboard and not any("lab.dashboard()" in "".join(c["source"]) for c in nb["cells"]):
        # until notebooks/src/20-vms.py shows the dashboard itself (requested from the lead)
        at = next(i for i, c in enumerate(nb["cells"]) if "runbook.open(" in "".join(c["source"]))
        nb["cells"].insert(at + 1, {"cell_type": "code", "execution_count": None, "id": "falkit-dashboard",
                                    "metadata": {}, "outputs": [], "source": "lab.dashboard()"})
    dst.write_text(json.dumps(nb, indent=1) + "\n")


@pytest.fixture(scope="module")
def lab_dir(browser_state) -> Path:
    root = browser_state / "lab"
    (root / "notebooks").mkdir(parents=True)
    for name in NOTEBOOKS:
        parameterize_copy(ROOT / "notebooks" / f"{name}.ipynb", root / "notebooks" / f"{name}.ipynb", OPTIONS.get(name),
                          dashboard=name == "20-vms")
    return root


@pytest.fixture(scope="module")
def jupyter(browser_twin, lab_dir, browser_state):
    from falkit.runbook.jupyter import start_lab

    base, _conn = browser_twin
    env = {"FALKIT_STATE_DIR": str(base), "PYTHONPATH": str(ROOT)}
    server = start_lab(lab_dir, state_dir=browser_state / "jupyter", env=env, timeout_s=120,
                       user_settings={"@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"}})
    try:
        yield server
    finally:
        server.stop()
        print(f"\nJupyterLab log: {server.log_path}")


@pytest.fixture(scope="module")
def shots() -> Path:
    d = ROOT / "outputs" / "browser"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


@pytest.fixture(scope="module")
def browser(chromium, jupyter):
    from playwright.sync_api import sync_playwright

    env = {k: v for k, v in jupyter.env.items() if not k.startswith("FALKIT_")}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS, env=env)
        try:
            yield b
        finally:
            b.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def page(browser, request, shots):
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    pg = context.new_page()
    pg.blocked = []
    pg.errors = []

    def route(r):
        host = urlsplit(r.request.url).hostname or ""
        if r.request.url.startswith(("data:", "blob:")) or host in LOOPBACK_HOSTS:
            r.continue_()
        else:
            pg.blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            path = shots / f"FAILED-{request.node.name}.png"
            pg.screenshot(path=str(path))
            print(f"\nscreenshot of the failure: {path}; blocked requests: {pg.blocked}; page errors: {pg.errors}")
        context.close()
