"""Connect to a target: the twin (the simulated lab on loopback) or the operator's live lab.

``connect(spec, "twin")`` reads ``$FALKIT_STATE_DIR/twin/connection.json`` (written by
``falkit twin up``; shape in docs/ARCHITECTURE.md). If no twin is up and ``start_twin`` is true, it
starts one in its "before" state from ``spec`` (via :mod:`falkit.twin.supervisor`).

``connect(spec, "live")`` takes the Proxmox URL and token id from ``spec.secrets`` and the token
secret from ``spec.secrets.proxmox_token`` (an environment variable or a file: a
:class:`~falkit.model.errors.TargetError` names it when it is not set). Kubeconfig, talosconfig and Talos
secrets live in the private state directory ``$FALKIT_STATE_DIR/live/<lab>/`` (mode 0700, files
0600). The twin's private directory is ``$FALKIT_STATE_DIR/twin/private/<lab>/``; it belongs to one
twin instance and is emptied when a new twin is started (a new twin is a new lab); `twin up --restore`
and `--no-fresh` continue the instance (connection.json "instance") and keep it.

The same clients serve both targets, and none is monkeypatched:

- ``target.pve`` is proxmoxer's ``ProxmoxAPI`` with API-token auth over HTTPS, TLS verified
  (:func:`falkit.clients.proxmox.token_client`: the twin's ``ca_file``; for live ``pve-ca.pem`` in the
  private dir, else the system CAs). Mutating calls reach the journal through a requests response
  hook (:func:`falkit.clients.proxmox.add_response_hook` with :meth:`Journal.pve_hook`).
- ``target.talos`` runs ``talosctl`` with the private dir's talosconfig on both targets. For the twin,
  :func:`connect` puts the twin's ``bin`` directory (``connection.json`` ``bin_dir``: executable
  ``talosctl``/``helm`` wrappers of the twin's stand-ins, written by ``falkit twin up``) first on
  ``PATH`` of this process — so of every subprocess and kernel it starts — and the same command
  lines reach the twin (:func:`use_twin_tools`).
- ``target.kube()`` is a :class:`falkit.clients.kube.JournaledApiClient` (a ``kubernetes.client.ApiClient``
  whose ``call_api`` records non-GET calls; :func:`falkit.clients.kube.journaled_api_client`) built from
  the kubeconfig: the private dir's (written by the Talos step after bootstrap), else, on the twin,
  the twin's admin kubeconfig of the "before" cluster. None yet -> ``TargetError``.
"""

from __future__ import annotations

import os
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..model.errors import TargetError
from ..model.spec import LabSpec, load_spec
from . import proxmox
from .journal import Journal


def state_base(state_dir: str | os.PathLike | None = None) -> Path:
    """``state_dir``, or ``$FALKIT_STATE_DIR``, or ``~/.local/state/falkit``."""
    if state_dir is not None:
        return Path(state_dir)
    return Path(os.environ.get("FALKIT_STATE_DIR") or Path.home() / ".local" / "state" / "falkit")


def private_dir_for(lab: str, kind: str, state_dir: str | os.PathLike | None = None) -> Path:
    """The private state directory of ``lab`` on target ``kind`` (created 0700)."""
    base = state_base(state_dir)
    path = base / "live" / lab if kind == "live" else base / "twin" / "private" / lab
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private_file(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600 from the start (never world-readable)."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, 0o600)
        fh.write(text)
    os.replace(tmp, path)
    return path


class Target:
    """A connected lab: ``pve``, ``node``, ``kube()``, ``dynamic()``, ``talos``, ``helm``, ``truenas``.

    It keeps only what connecting needs from the spec — the lab's name, the ``secrets`` section
    (Proxmox URL, token, root password references), the TrueNAS connection and the GitOps
    checkout settings — not the spec: a step's ``apply`` gets the target and its plan, so nothing
    it does can depend on the spec except through the plan (issue 18)."""

    def __init__(self, kind: str, spec: LabSpec, *, pve: Any, node: str, journal: Journal, private_dir: Path,
                 spec_path: Path | None = None, connection: dict | None = None):
        self.kind = kind
        self.lab = spec.lab
        self.secrets = spec.secrets
        self.gitops = spec.gitops  # where the GitOps checkout is (falkit.render.gitops.Checkout.for_target)
        self._truenas_conf = spec.truenas
        self.spec_path = spec_path
        self.pve = pve
        self.node = node
        self.journal = journal
        self.private_dir = private_dir
        self.connection = connection or {}
        self.token_id = ""  # the Proxmox API token id (user@realm!name), set by connect
        self._kube = None

    def __repr__(self) -> str:
        return f"Target({self.kind}, lab={self.lab}, node={self.node})"

    def pve_root(self) -> Any | None:
        """A root@pam (password) session for the few settings PVE refuses to API tokens, or None
        when no root password is available (twin: its password file; live:
        ``spec.secrets.proxmox_root_password``)."""
        if getattr(self, "_pve_root", None) is not None:
            return self._pve_root
        verify: str | bool = True
        if self.kind == "twin":
            px = self.connection.get("proxmox") or {}
            pw_file = px.get("password_file")
            if not pw_file or not Path(pw_file).is_file():
                return None
            password, host, port, verify = Path(pw_file).read_text().strip(), px["host"], int(px["port"]), px["ca_file"]
        else:
            ref = self.secrets.proxmox_root_password
            password = ref.resolve() if ref else None
            if not password:
                return None
            url = urlsplit(self.secrets.proxmox_url)
            host, port = url.hostname, url.port or 8006
            ca = self.private_dir / "pve-ca.pem"
            verify = str(ca) if ca.is_file() else True
        self._pve_root = proxmox.root_client(host, port, password, verify, hooks=[self.journal.pve_hook])
        return self._pve_root

    # -- private state -------------------------------------------------------------------------
    def guest_address(self, host: str, port: int) -> tuple[str, int]:
        """Where to connect for the lab service ``host:port`` (e.g. Plex on its container's IP:32400):
        itself on the live lab; on the twin the loopback stand-in its connection.json's
        ``address_map`` names (``"<ip>:<port>"`` or ``"*:<port>"`` -> ``"127.0.0.1:<port>"``). Same
        code path, another address: the caller still sends ``Host: host:port``."""
        amap = self.connection.get("address_map") or {}
        to = amap.get(f"{host}:{port}") or amap.get(f"*:{port}")
        if self.kind == "twin":
            if not to:
                raise TargetError(f"the twin publishes no stand-in for {host}:{port} (no address_map entry in connection.json)")
            h, _, p = str(to).rpartition(":")
            return h, int(p)
        return host, port

    def write_private(self, name: str, text: str) -> Path:
        """Write a private file (0600) in the private dir; writing ``kubeconfig`` resets ``kube()``."""
        if "/" in name or name.startswith("."):
            raise ValueError(f"private file name must be a plain name, not {name!r}")
        path = write_private_file(self.private_dir / name, text)
        if name == "kubeconfig":
            self.reset_kube()
        return path

    def read_private(self, name: str) -> str | None:
        path = self.private_dir / name
        return path.read_text() if path.is_file() else None

    # -- Kubernetes ----------------------------------------------------------------------------
    def kubeconfig_path(self) -> Path | None:
        """The kubeconfig in use: the private dir's, else (twin) the twin's admin kubeconfig."""
        own = self.private_dir / "kubeconfig"
        if own.is_file():
            return own
        twin_kc = (self.connection.get("kubernetes") or {}).get("kubeconfig")
        if self.kind == "twin" and twin_kc and Path(twin_kc).is_file():
            return Path(twin_kc)
        return None

    def kube(self):
        """The journaled ``kubernetes.client.ApiClient`` (cached). ``TargetError`` before bootstrap."""
        if self._kube is None:
            path = self.kubeconfig_path()
            if path is None:
                raise TargetError(f"no kubeconfig for {self.lab} yet: the Talos step (30-talos) fetches it after "
                                  f"bootstrap and keeps it in {self.private_dir / 'kubeconfig'}")
            from .kube import journaled_api_client  # noqa: PLC0415 - here: importing target (the runner does) loads no client

            self._kube = journaled_api_client(path, self.journal)
        return self._kube

    def dynamic(self):
        """The ``kubernetes.dynamic.DynamicClient`` over :meth:`kube` (:func:`falkit.clients.kube.dynamic_client`)."""
        from .kube import dynamic_client  # noqa: PLC0415 - a client loads when first used: the runner imports target without any (issue 17)

        return dynamic_client(self.kube())

    def reset_kube(self) -> None:
        if self._kube is not None:
            self._kube.close()
        self._kube = None

    # -- Talos, Helm, TrueNAS (lazy) ----------------------------------------------------------
    @property
    def lab_api(self) -> str | None:
        return self.connection.get("lab_api")

    @cached_property
    def talos(self):
        from .backends import talos  # noqa: PLC0415 - a client loads when first used: the runner imports target without any (issue 17)

        return talos.Talos(str(self.private_dir / "talosconfig"), self.journal)

    def tool_env(self) -> dict[str, str]:
        """The environment falkit runs ``helm``/``talosctl`` in: the process's, with the twin's
        stand-in directory (connection.json ``"bin_dir"``) first on PATH on the twin."""
        env = dict(os.environ)
        bindir = self.connection.get("bin_dir") if self.kind == "twin" else None
        if bindir:
            env["PATH"] = os.pathsep.join([bindir] + [p for p in env.get("PATH", "").split(os.pathsep) if p != bindir])
        return env

    @property
    def helm(self):
        """The Helm backend (``helm`` on PATH, the same class on both targets), over the kubeconfig
        in use now (it changes when 30-talos writes the new cluster's)."""
        from .backends import helm  # noqa: PLC0415 - a client loads when first used: the runner imports target without any (issue 17)

        path = self.kubeconfig_path()
        return helm.Helm(str(path or self.private_dir / "kubeconfig"), self.journal, env=self.tool_env())

    @cached_property
    def truenas(self):
        from .truenas import TrueNasClient  # noqa: PLC0415 - a client loads when first used: the runner imports target without any (issue 17)

        if self.kind == "twin":
            tn = self.connection.get("truenas") or {}
            if not tn:
                raise TargetError("the twin has no TrueNAS stand-in (no 'truenas' in connection.json)")
            return TrueNasClient(tn["url"], Path(tn["key_file"]).read_text().strip(), True)
        t = self._truenas_conf
        if t is None:
            raise TargetError("the lab spec has no 'truenas' section")
        key = t.api_key.resolve()
        if not key:
            raise TargetError(f"the TrueNAS API key is not set: {t.api_key.describe()} (spec truenas.api_key)")
        ca = self.private_dir / "truenas-ca.pem"
        return TrueNasClient(f"https://{t.ip}", key, str(ca) if ca.is_file() else True)

    def close(self) -> None:
        self.reset_kube()


# ----------------------------------------------------------------------------------------------


def _load(spec: LabSpec | str | os.PathLike, spec_path: str | os.PathLike | None) -> tuple[LabSpec, Path | None]:
    if isinstance(spec, LabSpec):
        return spec, Path(spec_path).resolve() if spec_path else None
    path = Path(spec).expanduser().resolve()
    return load_spec(path), path


def twin_connection(state_dir: str | os.PathLike | None = None) -> dict | None:
    """connection.json of the running twin, or None when no twin is up."""
    from ..twin import supervisor  # noqa: PLC0415 - a client loads when first used: the runner imports target without any (issue 17)

    st = supervisor.status(state_base(state_dir) / "twin")
    return st["connection"] if st["up"] else None


def _twin_private_dir(spec: LabSpec, conn: dict, state_dir: str | os.PathLike | None) -> Path:
    """The twin's private dir; emptied when it belonged to an earlier twin instance (a restored
    twin continues its instance: its private state is kept)."""
    path = private_dir_for(spec.lab, "twin", state_dir)
    os.chmod(path.parent, 0o700)
    marker = path / "twin-started"
    # The twin instance (connection.json "instance"): the same after `twin up --restore` or
    # `--no-fresh`, which keep the private state; a fresh twin is a new instance (a new lab).
    started = str(conn.get("instance") or conn.get("started", ""))
    if marker.is_file() and marker.read_text() == started:
        return path
    for entry in path.iterdir():
        if entry.name == "run.lock":
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    # What the twin's operator keeps where docs/ARCHITECTURE.md tells an operator to put it (the
    # existing cluster's Talos secrets, "Existing cluster identity"): the twin's operator/ dir.
    operator = Path(str(conn.get("state_dir") or "")) / "operator"
    if conn.get("state_dir") and operator.is_dir():
        for f in sorted(operator.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                write_private_file(path / f.name, f.read_text())
    write_private_file(marker, started)
    return path


def connect(spec: LabSpec | str | os.PathLike, target: str = "twin", state_dir: str | os.PathLike | None = None,
            journal: Journal | None = None, start_twin: bool = True, *, spec_path: str | os.PathLike | None = None,
            time_factor: float = 0.0, check_privileges: bool = True) -> Target:
    """Connect to the twin or the live lab (see the module docstring). ``spec`` is a LabSpec or a path.
    ``check_privileges``: refuse (TargetError) a Proxmox token that lacks a privilege of falkit's role
    (:func:`falkit.clients.proxmox.check_privileges`); a read-only report such as ``falkit doctor`` passes False."""
    lab_spec, path = _load(spec, spec_path)
    journal = journal if journal is not None else Journal()
    if target == "twin":
        t = _connect_twin(lab_spec, path, state_dir, journal, start_twin, time_factor)
    elif target == "live":
        t = _connect_live(lab_spec, path, state_dir, journal)
    else:
        raise TargetError(f"target must be 'twin' or 'live', not {target!r}")
    if check_privileges:
        proxmox.check_privileges(t.pve, t.token_id)
    return t


def use_twin_tools(conn: dict) -> str | None:
    """Put the twin's tool wrappers (``conn["bin_dir"]``) first on this process' ``PATH`` (inherited
    by subprocesses and notebook kernels); returns the directory, or None when the twin has none."""
    bin_dir = conn.get("bin_dir")
    if not bin_dir or not Path(bin_dir).is_dir():
        return None
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    os.environ["PATH"] = os.pathsep.join([bin_dir, *parts])
    return bin_dir


def _connect_twin(spec: LabSpec, path: Path | None, state_dir, journal: Journal, start_twin: bool,
                  time_factor: float) -> Target:
    from ..twin import supervisor  # noqa: PLC0415 - a client loads when first used: the runner imports target without any (issue 17)

    conn = twin_connection(state_dir)
    if conn is None:
        if not start_twin:
            raise TargetError("no twin is up: start one with `falkit twin up` (or connect with start_twin=True)")
        conn = supervisor.up(path or spec, state="auto", state_dir=state_base(state_dir) / "twin",
                             time_factor=time_factor)
    px = conn["proxmox"]
    token_id = f"{px.get('user', 'root@pam')}!{px['token_name']}"
    secret = Path(px["token_file"]).read_text().strip()
    pve = proxmox.token_client(px["host"], int(px["port"]), token_id, secret, px["ca_file"], hooks=[journal.pve_hook])
    t = Target("twin", spec, pve=pve, node=px["node"], journal=journal, spec_path=path, connection=conn,
               private_dir=_twin_private_dir(spec, conn, state_dir))
    t.token_id = token_id
    use_twin_tools(conn)
    return t


def _connect_live(spec: LabSpec, path: Path | None, state_dir, journal: Journal) -> Target:
    sec = spec.secrets
    secret = sec.proxmox_token.resolve()
    if not secret:
        raise TargetError(f"the Proxmox API token secret is not set: {sec.proxmox_token.describe()} "
                          f"(spec secrets.proxmox_token, for token {sec.proxmox_token_id})")
    url = urlsplit(sec.proxmox_url)
    if url.scheme != "https" or not url.hostname:
        raise TargetError(f"secrets.proxmox_url must be an https:// URL, not {sec.proxmox_url!r}")
    private = private_dir_for(spec.lab, "live", state_dir)
    ca = private / "pve-ca.pem"
    pve = proxmox.token_client(url.hostname, url.port or 8006, sec.proxmox_token_id, secret,
                       str(ca) if ca.is_file() else True, hooks=[journal.pve_hook])
    conn = {"target": "live", "proxmox": {"url": sec.proxmox_url, "node": spec.host.node}}
    t = Target("live", spec, pve=pve, node=spec.host.node, journal=journal, spec_path=path, connection=conn,
               private_dir=private)
    t.token_id = sec.proxmox_token_id
    return t


def connection_summary(target: Target) -> dict[str, Any]:
    """What a notebook header may show about a target (no secrets, no ports)."""
    return {"target": target.kind, "lab": target.lab, "node": target.node,
            "spec": target.spec_path.name if target.spec_path else None}
