"""Start and stop a JupyterLab server on loopback with its state isolated (tests and ``falkit lab``).

Behaviour covered:

- Listens on 127.0.0.1 only, on a free random port (or the one given), with a random token
  (``--IdentityProvider.token``; FACTS.md "Notebook stack"), ``--allow-root`` (CI runs as root),
  no browser opened.
- Nothing phones home: no news feed (``--LabApp.news_url=None``), no update check
  (``--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate``), the read-only extension
  manager (no PyPI queries), the announcements plugin disabled in ``labconfig/page_config.json``,
  and ``--LanguageServerManager.autodetect=False`` when jupyter-lsp is installed.
- State never goes to ``$HOME``: ``JUPYTER_CONFIG_DIR``, ``JUPYTER_DATA_DIR``,
  ``JUPYTER_RUNTIME_DIR``, ``IPYTHONDIR``, ``XDG_CONFIG_HOME``/``XDG_CACHE_HOME``/``XDG_DATA_HOME``/
  ``XDG_STATE_HOME`` and ``HOME`` itself point into ``state_dir`` (FACTS.md: Jupyter and Chromium
  write to ``$HOME`` otherwise). :func:`isolated_env` gives the same variables to a browser.
- The server is ready when ``GET /api/status`` answers 200 with the token; if the process exits
  first or ``timeout_s`` passes, :class:`JupyterError` carries the end of its log.
- :meth:`LabServer.stop` terminates the process group (the server and its kernels), then kills it.
- ``falkit lab`` (:func:`run_lab`) never serves the repository's notebooks: it makes a **session**
  (:func:`make_session`), a run directory ``outputs/<UTC time>-lab/`` holding a copy of
  ``notebooks/*.ipynb`` with their outputs stripped and ``parameters`` linked to the repository's
  (so ``../parameters/fal.yaml`` resolves as in the repository), serves that directory, and gives
  the kernels ``FALKIT_RUN_DIR`` = the session: what a gate applies is journaled and archived there
  like a ``falkit run`` (``run.json``, ``<nb>.result.json``, ``journal.jsonl``; ``falkit runs`` lists
  it). Autosave writes into the copy; the tracked notebooks (with their nbval reference outputs)
  stay as committed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FalkitError

HOST = "127.0.0.1"
DISABLED_PLUGINS = ("@jupyterlab/apputils-extension:announcements",)


class JupyterError(FalkitError, RuntimeError):
    """JupyterLab did not start (or answer) as expected."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def isolated_env(state_dir: str | os.PathLike, base: dict[str, str] | None = None, *,
                 home: bool = True) -> dict[str, str]:
    """``base`` (default ``os.environ``) with every Jupyter/IPython/XDG dir (and ``HOME`` unless
    ``home=False``) under ``state_dir``. ``FALKIT_STATE_DIR`` is pinned to its current value, so
    kernels still find the twin when ``HOME`` moves; ``FALKIT_HEADLESS`` and ``FALKIT_RUN_DIR`` are
    dropped (kernels of this server are interactive, not part of a ``falkit run``)."""
    root = Path(state_dir)
    env = dict(os.environ if base is None else base)
    env.setdefault("FALKIT_STATE_DIR", os.path.join(os.path.expanduser("~"), ".local", "state", "falkit"))
    dirs = {"HOME": "home", "JUPYTER_CONFIG_DIR": "jupyter/config", "JUPYTER_DATA_DIR": "jupyter/data",
            "JUPYTER_RUNTIME_DIR": "jupyter/runtime", "IPYTHONDIR": "ipython", "XDG_CONFIG_HOME": "xdg/config",
            "XDG_CACHE_HOME": "xdg/cache", "XDG_DATA_HOME": "xdg/data", "XDG_STATE_HOME": "xdg/state",
            "XDG_RUNTIME_DIR": "xdg/runtime"}
    if not home:
        dirs.pop("HOME")
    for var, sub in dirs.items():
        path = root / sub
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[var] = str(path)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    for var in ("JPY_SESSION_NAME", "FALKIT_HEADLESS", "FALKIT_RUN_DIR"):  # kernels here are interactive
        env.pop(var, None)
    # loopback must never go through a proxy
    env["NO_PROXY"] = env["no_proxy"] = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1,localhost"]))
    return env


def write_lab_config(config_dir: str | os.PathLike, user_settings: dict[str, dict] | None = None) -> Path:
    """``labconfig/page_config.json`` disabling the plugins that reach the network (announcements),
    and JupyterLab user settings: ``{"@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"}}``
    becomes ``lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings``."""
    path = Path(config_dir) / "labconfig" / "page_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"disabledExtensions": {p: True for p in DISABLED_PLUGINS}}, indent=2) + "\n")
    for plugin_id, values in (user_settings or {}).items():
        package, plugin = plugin_id.split(":", 1)
        settings = Path(config_dir) / "lab" / "user-settings" / package / f"{plugin}.jupyterlab-settings"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps(values, indent=2) + "\n")
    return path


def lab_command(root_dir: str | os.PathLike, port: int, token: str, *, host: str = HOST,
                python: str = sys.executable, extra: tuple[str, ...] = ()) -> list[str]:
    """The ``jupyter lab`` command line (JupyterLab 4, flags checked with ``jupyter lab --help-all``)."""
    cmd = [python, "-m", "jupyterlab", f"--ServerApp.root_dir={root_dir}", f"--ServerApp.ip={host}",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.open_browser=False",
           "--allow-root", f"--IdentityProvider.token={token}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False"]
    if importlib.util.find_spec("jupyter_lsp") is not None:
        cmd.append("--LanguageServerManager.autodetect=False")
    return cmd + list(extra)


@dataclass
class LabServer:
    """A running JupyterLab (see :func:`start_lab`)."""

    process: subprocess.Popen
    host: str
    port: int
    token: str
    root_dir: Path
    state_dir: Path
    log_path: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def lab_url(self, path: str = "", *, reset: bool = True) -> str:
        """URL opening ``path`` (relative to the root dir) in JupyterLab, with the token."""
        query = f"token={self.token}" + ("&reset" if reset else "")
        return f"{self.url}lab/tree/{path.lstrip('/')}?{query}" if path else f"{self.url}lab?{query}"

    def api(self, path: str, timeout: float = 5.0) -> dict:
        """GET a Jupyter server REST route (``/api/...``) with the token; JSON."""
        req = urllib.request.Request(f"{self.url}{path.lstrip('/')}", headers={"Authorization": f"token {self.token}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode())

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise JupyterError(f"JupyterLab exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.api("api/status", timeout=2.0)
                return
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.3)
        self.stop()
        raise JupyterError(f"JupyterLab did not answer on {self.url} within {timeout_s:g} s ({last}):\n{self.log_tail()}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """Terminate the server and its kernels (its process group); kill what remains."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:  # kernels may outlive the server by a moment
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.process.poll() is None:
            self.process.wait(5)

    def __enter__(self) -> LabServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_lab(root_dir: str | os.PathLike, *, state_dir: str | os.PathLike | None = None, port: int | None = None,
              token: str | None = None, env: dict[str, str] | None = None, host: str = HOST,
              timeout_s: float = 90.0, extra: tuple[str, ...] = (), home: bool = True,
              user_settings: dict[str, dict] | None = None) -> LabServer:
    """Start JupyterLab serving ``root_dir`` and wait until it answers.

    ``state_dir`` holds all Jupyter state (a new temp dir when None); ``env`` are extra variables for
    the server and its kernels (e.g. ``FALKIT_STATE_DIR``); ``home=False`` keeps the real ``HOME``.
    ``user_settings`` go to :func:`write_lab_config`. The log is ``state_dir/jupyterlab.log``.
    """
    state = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="falkit-jupyter-"))
    state.mkdir(parents=True, exist_ok=True)
    full_env = isolated_env(state, home=home)
    full_env.update(env or {})
    write_lab_config(full_env["JUPYTER_CONFIG_DIR"], user_settings)
    token = token or secrets.token_hex(24)
    port = port or free_port(host)
    log_path = state / "jupyterlab.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(lab_command(root_dir, port, token, host=host, extra=extra), cwd=str(root_dir),
                                env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    server = LabServer(proc, host, port, token, Path(root_dir), state, log_path, full_env)
    server.wait_ready(timeout_s)
    return server


def make_session(root_dir: str | os.PathLike, outputs: str | os.PathLike | None = None) -> Path:
    """A session directory ``<outputs>/<UTC time>-lab`` (default ``$FALKIT_OUTPUTS`` or
    ``<root_dir>/outputs``): ``notebooks/`` with copies of ``<root_dir>/notebooks/NN-*.ipynb``, outputs
    and execution counts stripped; ``parameters`` a link to ``<root_dir>/parameters``."""
    import nbformat

    root = Path(root_dir).resolve()
    base = Path(outputs or os.environ.get("FALKIT_OUTPUTS") or root / "outputs").resolve()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    session = base / f"{stamp}-lab"
    n = 1
    while session.exists():
        n += 1
        session = base / f"{stamp}-lab-{n}"
    (session / "notebooks").mkdir(parents=True)
    for src in sorted((root / "notebooks").glob("[0-9][0-9]-*.ipynb")):
        nb = nbformat.read(src, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
        nbformat.write(nb, session / "notebooks" / src.name)
    if (root / "parameters").is_dir():
        (session / "parameters").symlink_to(root / "parameters", target_is_directory=True)
    return session


def run_lab(root_dir: str | os.PathLike, *, port: int | None = None, state_dir: str | os.PathLike | None = None,
            out=None, outputs: str | os.PathLike | None = None) -> int:
    """``falkit lab``: make a session copy of the notebooks (:func:`make_session`), start JupyterLab on
    loopback serving it, print the URL, wait until Ctrl-C or the server exits."""
    out = out or sys.stdout
    base = os.environ.get("FALKIT_STATE_DIR") or os.path.expanduser("~/.local/state/falkit")
    state = Path(state_dir) if state_dir else Path(base) / "jupyter"
    session = make_session(root_dir, outputs)
    server = start_lab(session, state_dir=state, port=port, home=False,
                       env={"FALKIT_RUN_DIR": str(session), "FALKIT_OUTPUTS": str(session.parent)})
    print(f"JupyterLab on {server.lab_url('notebooks', reset=False)}", file=out, flush=True)
    print(f"(session copy of the notebooks and its archive: {session}; `falkit runs` lists it. "
          f"Jupyter state in {state}; log {server.log_path}; Ctrl-C stops it)", file=out, flush=True)
    try:
        return server.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def ipc_kernel_config():
    """Configuration for kernels started by papermill/nbclient (``falkit run``, ``nbbuild
    --execute``): they talk over Unix sockets (IPC) instead of plain-text TCP on loopback — no
    ports, and no "running over TCP without encryption" warning in every notebook. The socket
    prefix is absolute (a relative one resolves against each side's working directory, which
    differ when the kernel runs in the notebook's folder): Jupyter's runtime dir (private, where
    the connection files go too), or a private temp dir when that path is too long for a socket."""
    import tempfile

    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets.config import Config

    runtime = Path(jupyter_runtime_dir())
    if len(str(runtime)) > 70:  # AF_UNIX paths end at 107 bytes; leave room for "-<pid>-<n>-<port>"
        runtime = Path(tempfile.mkdtemp(prefix="falkit-ipc-"))
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    c = Config()
    c.KernelManager.transport = "ipc"
    c.KernelManager.ip = str(runtime / f"falkit-{os.getpid()}")
    return c
