"""falkit.runbook.jupyter: JupyterLab on loopback with isolated state (the browser test's server, `falkit lab`).

Covers: the command line (loopback, token, --allow-root, no news/update checks, read-only extension
manager, LSP autodetect off when jupyter-lsp is installed); every Jupyter/IPython/XDG dir and HOME
under the state dir, FALKIT_STATE_DIR pinned, FALKIT_HEADLESS/FALKIT_RUN_DIR dropped; the
announcements plugin disabled and user settings written; a started server answers its REST API only
with the token and keeps its runtime files in the state dir; stop() ends it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from falkit.runbook import jupyter


def test_command_line_has_no_network_features():
    cmd = jupyter.lab_command("/nb", 8899)
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--ServerApp.port=8899" in cmd and "--allow-root" in cmd
    assert not any("token" in c.lower() for c in cmd) and "--ServerApp.open_browser=False" in cmd
    assert "--LabApp.news_url=None" in cmd and "--LabApp.extension_manager=readonly" in cmd
    assert "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate" in cmd
    assert "--LanguageServerManager.autodetect=False" in cmd  # jupyter-lsp is installed with jupyterlab


def test_isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FALKIT_HEADLESS", "1")
    monkeypatch.setenv("FALKIT_STATE_DIR", "/some/state")
    env = jupyter.isolated_env(tmp_path)
    for var in ("HOME", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
                "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        assert env[var].startswith(str(tmp_path)), var
    assert env["FALKIT_STATE_DIR"] == "/some/state" and "FALKIT_HEADLESS" not in env
    assert jupyter.isolated_env(tmp_path, home=False)["HOME"] != env["HOME"]
    page = jupyter.write_lab_config(env["JUPYTER_CONFIG_DIR"], {"@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"}})
    assert json.loads(page.read_text())["disabledExtensions"]["@jupyterlab/apputils-extension:announcements"] is True
    settings = tmp_path / "jupyter/config/lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings"
    assert json.loads(settings.read_text()) == {"windowingMode": "none"}


def test_server_starts_isolated_and_stops(tmp_path):
    (tmp_path / "nb").mkdir()
    with jupyter.start_lab(tmp_path / "nb", state_dir=tmp_path / "state") as server:
        assert server.host == "127.0.0.1"
        assert "started" in server.api("api/status")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(urllib.error.HTTPError) as exc:
            opener.open(f"{server.url}api/status", timeout=5)
        assert exc.value.code == 403  # no token, no answer
        assert server.lab_url("notebooks/20-vms.ipynb").startswith(f"{server.url}lab/tree/notebooks/20-vms.ipynb?token=")
        assert (tmp_path / "state/jupyter/runtime").is_dir() and server.env["HOME"] == str(tmp_path / "state/home")
    assert server.process.poll() is not None
