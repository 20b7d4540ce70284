"""Start, inspect and stop the twin: ``falkit twin up|status|down``.

The twin is two detached processes on loopback, each started with ``start_new_session``:

- ``python -m falkit.twin.pve_process --config DIR/pve-config.json --state-dir DIR`` (fakepve, the AGPL
  boundary; it writes ``DIR/pve.json`` when ready),
- ``python -m falkit.twin.lab_process --state-dir DIR`` (kube emulator + lab API; writes ``DIR/lab.json``
  = ``{"pid", "kube_server", "lab_api", ...}`` when ready).

``DIR`` is ``$FALKIT_STATE_DIR/twin`` (default ``~/.local/state/falkit/twin``), mode 0700. ``up`` writes
``DIR/connection.json`` (the shape in docs/ARCHITECTURE.md; secrets only as paths of 0600 files) and
``DIR/pids.json`` (each pid with the command line it was started with, so ``down`` stops exactly the
processes it started). Logs are in ``DIR/logs/``. Every file ``up`` writes is 0600.

**Credentials** (issue 16 item 7): the twin's Proxmox control API, lab API and Kubernetes API
answer only requests with the token of a 0600 file in ``DIR`` (``pve-control-token``,
``lab-token``, the ``kubeconfig``'s user token), which each process makes when it starts and
connection.json names (``pve_control_token_file``, ``lab_token_file``, ``kubernetes.kubeconfig``);
no secret is on any command line (the processes' argv and the tool wrappers hold paths only).
:mod:`falkit.twin.credentials` has the rules.

**Snapshots** (:func:`snapshot`) are written only inside ``DIR`` (a plain name goes to
``DIR/snapshots/``; 0600): they hold the lab's secrets. A snapshot has three parts: ``PATH`` (the
Proxmox half), ``PATH.lab`` (the lab half) and ``PATH.private`` (each lab's private state:
talosconfig, kubeconfig, Talos secrets...). ``up(restore=PATH)`` (``falkit twin up --restore``)
writes the private state back and points every kubeconfig in it at the new Kubernetes API port
(issue 15 item 5); it never removes the private state. The twin instance a private directory
belongs to is ``DIR/instance``: kept by ``--restore``/``--no-fresh``, new after a fresh ``up``.

**A twin always starts in its start state** (issue 12, item 4). Its two processes hold the lab in
memory, so every ``up`` builds the "before" (or empty) lab anew; what a twin instance leaves on disk
— the GitOps repository ``DIR/gitops`` (the rehearsal's commits on ``falkit/migration``), the
private state ``DIR/private/<lab>/`` (talosconfig, kubeconfig, Talos secrets, benchmark results) and
``DIR/spec.json`` — is removed by ``up`` too (``fresh=True``, the default), so a lab built fresh
never meets a repository that is already migrated (the "before" twin's Traefik would be
``<pending>`` and 40-cilium would wait for a sync that cannot change anything). Only a restore
(``up(restore=SNAPSHOT)``) or ``fresh=False`` keeps them. :func:`reset` stops a running twin and
starts it again fresh (``falkit twin reset``); it refuses while a ``falkit run`` holds a lab's lock.
The lock file ``run.lock`` itself is never removed here (the run that starts the twin holds it).
"""

from __future__ import annotations

import base64
import datetime as _dt
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from falkit.model.errors import TwinError
from falkit.twin import credentials
from falkit.twin.gitops_fixture import make_fixture_repo, make_remote
from falkit.twin.seed import BEFORE_LONGHORN_DISK_GB, BEFORE_NETWORK

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
GIB = 1024 ** 3


ROLE = json.loads((Path(__file__).resolve().parents[1] / "data" / "pve-role.json").read_text())

# An entry of Proxmox's appliance index (PVE::APLInfo fields; the system templates live under
# download.proxmox.com/images/system/ — a string here, never fetched).
APPLIANCE_DEBIAN_12 = {"template": "debian-12-standard_12.7-1_amd64.tar.zst", "type": "lxc", "os": "debian-12",
                       "package": "debian-12-standard", "version": "12.7-1", "section": "system",
                       "headline": "Debian 12 Bookworm (standard)", "architecture": "amd64",
                       "location": "http://download.proxmox.com/images/system/debian-12-standard_12.7-1_amd64.tar.zst",
                       "size": 120 * 1024 ** 2}


# --------------------------------------------------------------------- paths

def state_root(state_dir: str | os.PathLike | None = None) -> Path:
    """The twin's directory: the argument, or $FALKIT_STATE_DIR/twin, or ~/.local/state/falkit/twin."""
    if state_dir is not None:
        return Path(state_dir)
    base = os.environ.get("FALKIT_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".local", "state", "falkit")
    return Path(base) / "twin"


def _write_json(path: Path, data: Any, mode: int = 0o600) -> None:
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, mode)
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- spec -> config

def _as_dict(spec: Any) -> dict:
    if hasattr(spec, "model_dump"):
        return spec.model_dump(mode="json")
    if isinstance(spec, dict):
        return spec
    raise TypeError(f"spec must be a LabSpec or a dict, not {type(spec).__name__}")


def _mac(prefix: str, ip: str) -> str:
    """The seed's MAC scheme: the IP's last octet as the last MAC byte's digits (10.30.0.11 -> ...:11)."""
    octet = int(ip.rsplit(".", 1)[1])
    return f"{prefix}:{octet:02d}" if octet < 100 else f"{prefix}:{octet:02x}"


def pve_config_from_spec(spec: Any, state: str = "before") -> dict:
    """The pve_process config for a lab spec (a ``falkit.model.spec.LabSpec`` or a plain dict).

    Plain dict keys (the minimal contract): ``node``, ``cpu_threads``, ``memory_gb``,
    ``storages: [{name, type, size_gb[, content]}]``. A LabSpec (or its dict) is read from
    ``host.*`` (node, cpu.threads/cores/model, memory_gb, storages, nic), ``cluster.*`` for the VM
    sizes and ``previous.*`` for the pre-migration network and nodes.

    ``state="before"``: the pre-migration lab — VMID 200 talos-cp-01 (2 vCPU, 4 GiB, 30 GB OS disk on
    local-lvm) and 201 talos-worker-01 (2 vCPU, 9 GiB, OS disk plus a Longhorn data disk on helford),
    both running with net0 on vmbr0 and MACs 52:54:00:10:30:XX; only vmbr0, on 10.30.0.0/24 gateway
    10.30.0.1. ``state="empty"``: the bare host with vmbr0.
    """
    if state not in ("before", "empty"):
        raise ValueError(f"state must be 'before' or 'empty', not {state!r}")
    d = _as_dict(spec)
    host = d.get("host") or d
    cpu = host.get("cpu") or {}
    threads = int(cpu.get("threads") or host.get("cpu_threads") or 16)
    cores = int(cpu.get("cores") or host.get("cpu_cores") or max(threads // 2, 1))
    storages = []
    for st in host.get("storages") or []:
        content = st.get("content") or ["images", "rootdir"]
        storages.append({"name": st["name"], "type": st.get("type", "lvmthin"),
                         "content": ",".join(content) if isinstance(content, list) else content,
                         "total": int(st["size_gb"]) * 10 ** 9 if st.get("size_gb") else 100 * GIB})
    if not any(s["name"] == "local" for s in storages):
        # PVE's own `local` dir storage: ISOs and templates (not sized by the seed: 100 GB).
        storages.insert(0, {"name": "local", "type": "dir", "path": "/var/lib/vz",
                            "content": "iso,vztmpl,backup,snippets", "total": 100 * 10 ** 9})
    nic = host.get("nic") or "enp1s0"
    prev = d.get("previous") or {}
    prev_net = dict(BEFORE_NETWORK, **{k: v for k, v in (prev.get("network") or {}).items() if v})
    bridge = {"iface": prev_net.get("bridge", "vmbr0"), "type": "bridge", "bridge_ports": prev_net.get("bridge_ports") or nic,
              "cidr": f"{BEFORE_NETWORK['host_ip']}/{prev_net['cidr'].split('/')[1]}",
              "gateway": prev_net["gateway"], "autostart": 1}
    cfg = {"node": host.get("node", "fal"),
           "cpu": {"threads": threads, "cores": cores, "sockets": int(cpu.get("sockets") or 1),
                   "model": cpu.get("model") or "AMD Ryzen 9 6800HX with Radeon Graphics"},
           "memory_gb": int(host.get("memory_gb") or 32),
           "storages": storages, "nics": [nic], "bridges": [bridge], "vms": [], "cts": [],
           # No LXC template on the host (a fresh PVE has none): the Plex step downloads it through
           # the appliance index, as `pveam download` does (issue 13 fault 9).
           "templates": [],
           "appliances": [dict(APPLIANCE_DEBIAN_12)],
           "time_scale": 0.0,
           # The operator's API token as docs/SETUP describes it: privilege-separated (PVE's default),
           # with exactly the documented role on / (falkit/data/pve-role.json, a data file).
           "token": {"privsep": True, "acl": [{"path": ROLE["path"], "privs": list(ROLE["privileges"])}]}}
    if state == "before":
        cluster = d.get("cluster") or {}
        cp = (cluster.get("control_plane") or [{}])[0]
        wk = (cluster.get("workers") or [{}])[0]
        defaults = cluster.get("vm_defaults") or {}
        os_store = defaults.get("os_storage", "local-lvm")
        data_store = defaults.get("data_storage", "helford")
        names = {n.get("vmid"): n for n in prev.get("nodes") or []}
        prefix = prev_net["mac_prefix"]
        cp_id, wk_id = int(cp.get("vmid", 200)), int(wk.get("vmid", 201))
        cp_ip = names.get(cp_id, {}).get("ip", "10.30.0.10")
        wk_ip = names.get(wk_id, {}).get("ip", "10.30.0.11")
        common = {"ostype": "l26", "scsihw": "virtio-scsi-single", "agent": "1", "cpu": "host", "sockets": 1}
        cfg["vms"] = [
            {"vmid": cp_id, "name": names.get(cp_id, {}).get("name") or cp.get("name", "talos-cp-01"),
             "status": "running",
             "config": dict(common, cores=int(cp.get("cores", 2)), memory=str(int(cp.get("memory_gb", 4)) * 1024),
                            net0=f"virtio={_mac(prefix, cp_ip)},bridge={bridge['iface']}",
                            scsi0=f"{os_store}:{int(cp.get('os_disk_gb', 30))},discard=on,ssd=1")},
            {"vmid": wk_id, "name": names.get(wk_id, {}).get("name") or wk.get("name", "talos-worker-01"),
             "status": "running",
             "config": dict(common, cores=int(wk.get("cores", 2)), memory=str(int(wk.get("memory_gb", 9)) * 1024),
                            net0=f"virtio={_mac(prefix, wk_ip)},bridge={bridge['iface']}",
                            scsi0=f"{os_store}:{int(wk.get('os_disk_gb', 30))},discard=on,ssd=1",
                            scsi1=f"{data_store}:{BEFORE_LONGHORN_DISK_GB},discard=on,ssd=1")},
        ]
    return cfg


def load_spec_any(spec_path: str | os.PathLike | dict) -> Any:
    """The spec: a dict as given, else falkit.model.spec.load_spec(path), else the file's YAML/JSON."""
    if isinstance(spec_path, dict) or hasattr(spec_path, "model_dump"):
        return spec_path
    try:
        from falkit.model.spec import load_spec  # noqa: PLC0415 - the spec loader only when a spec file is given (supervisor start-up)
    except ImportError:
        load_spec = None
    if load_spec is not None:
        return load_spec(spec_path)
    with open(spec_path) as fh:
        return yaml.safe_load(fh)


def _spec_file(spec_path: Any, root: Path) -> Path | None:
    """A file the lab process can load the spec from: the given path, or a dump of a spec object."""
    if isinstance(spec_path, str | os.PathLike):
        return Path(spec_path).resolve()
    data = spec_path.model_dump(mode="json", exclude_unset=True) if hasattr(spec_path, "model_dump") else spec_path
    if not isinstance(data, dict):
        return None
    out = root / "spec.json"
    _write_json(out, data)
    return out


# ------------------------------------------------------------------ processes

def _cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _is_ours(pid: int, argv: list[str]) -> bool:
    """True if pid is alive (not a zombie) and runs exactly the command line we started."""
    cmd = _cmdline(pid)
    if not cmd:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except (OSError, IndexError):
        return False
    return cmd == argv


def _spawn(name: str, argv: list[str], root: Path) -> subprocess.Popen:
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = open(logs / f"{name}.log", "ab")
    err = open(logs / f"{name}.err", "ab")
    # The children import falkit from where this process found it (installed or a source tree).
    pkg_parent = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (pkg_parent, os.environ.get("PYTHONPATH")) if p)
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                                cwd=str(root), env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=pythonpath))
    finally:
        out.close()
        err.close()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(procs: dict[str, subprocess.Popen], files: dict[str, Path], root: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    ready: dict[str, dict] = {}
    while True:
        for name, path in files.items():
            if name in ready:
                continue
            data = _read_json(path)
            if data and data.get("pid") == procs[name].pid:
                ready[name] = data
        if len(ready) == len(files):
            return ready
        for name, proc in procs.items():
            if name not in ready and proc.poll() is not None:
                raise TwinError(f"twin {name} process exited with status {proc.returncode} before it was ready; "
                                f"stderr ({root / 'logs' / (name + '.err')}):\n{_tail(root / 'logs' / (name + '.err'))}")
        if time.monotonic() > deadline:
            missing = ", ".join(n for n in files if n not in ready)
            tails = "\n".join(f"--- {n} stderr:\n{_tail(root / 'logs' / (n + '.err'))}" for n in files if n not in ready)
            raise TwinError(f"twin not ready after {timeout:.0f} s (waiting for {missing})\n{tails}")
        time.sleep(0.05)


def _terminate(pid: int, argv: list[str], timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM pid if it is still our process; SIGKILL after timeout. True if it was ours."""
    if not _is_ours(pid, argv):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _is_ours(pid, argv):
            return True
        time.sleep(0.05)
    if _is_ours(pid, argv):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status if pid is our child (started by this Python process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# ----------------------------------------------------------------------- API

def _live(root: Path) -> dict | None:
    """The recorded processes, if every one of them is still ours."""
    pids = _read_json(root / "pids.json")
    if not pids or not pids.get("processes"):
        return None
    if all(_is_ours(p["pid"], p["argv"]) for p in pids["processes"].values()):
        return pids
    return None


def _write_kubeconfig(path: Path, server: str) -> None:
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "falkit-twin",
           "clusters": [{"name": "falkit-twin", "cluster": {"server": server}}],
           "users": [{"name": "falkit-twin", "user": {}}],
           "contexts": [{"name": "falkit-twin", "context": {"cluster": "falkit-twin", "user": "falkit-twin"}}]}
    _write_json(path, cfg, mode=0o600)  # JSON is valid YAML: kubectl and the kubernetes client read it


TOOLS = ("talosctl", "helm")


def write_tool_wrappers(root: Path, spec: Any = None) -> Path:
    """Executable wrappers ``ROOT/bin/<tool>`` for the twin's stand-ins (``exec <python> -m
    falkit.twin.tools.<tool> "$@"``), for every name in :data:`TOOLS`; falkit.clients.target puts ``ROOT/bin``
    first on PATH for the twin target. The wrapper pins the twin's directory, the falkit package
    the twin runs, and the Talos version the twin's nodes run (the stand-in's client version)."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    pkg_parent = str(Path(__file__).resolve().parents[2])
    talos_version = ""
    try:
        talos_version = str(((_as_dict(spec).get("versions") or {}).get("talos")) or "") if spec is not None else ""
    except TypeError:
        talos_version = ""
    for tool in TOOLS:
        text = ("#!/bin/sh\n"
                f"# falkit twin stand-in for {tool} (falkit/twin/tools/{tool}.py); written by `falkit twin up`\n"
                f"FALKIT_TWIN_DIR={shlex.quote(str(root))}; export FALKIT_TWIN_DIR\n"
                f"FALKIT_TWIN_TALOS_VERSION={shlex.quote(talos_version)}; export FALKIT_TWIN_TALOS_VERSION\n"
                f"PYTHONPATH={shlex.quote(pkg_parent)}${{PYTHONPATH:+:$PYTHONPATH}}; export PYTHONPATH\n"
                f"exec {shlex.quote(sys.executable)} -m falkit.twin.tools.{tool} \"$@\"\n")
        path = bin_dir / tool
        tmp = bin_dir / f".{tool}.tmp.{os.getpid()}"
        tmp.write_text(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    return bin_dir


def _connection(root: Path, pve: dict, lab: dict | None, started: str, instance: str = "") -> dict:
    conn: dict[str, Any] = {
        "target": "twin", "started": started, "instance": instance, "state_dir": str(root),
        "pids": {"pve": pve["pid"]},
        "proxmox": {"host": pve["host"], "port": pve["port"], "node": pve["node"], "ca_file": pve["ca_file"],
                    "user": pve.get("user", "root@pam"), "token_name": pve["token_name"],
                    "token_file": pve["token_file"], "password_file": pve.get("password_file")},
        "pve_control": pve["control"], "pve_control_token_file": pve.get("control_token_file"),
        # the guests' services (Plex on the container's IP:32400) -> the pve process's loopback stand-in
        "address_map": dict(pve.get("address_map") or {}),
    }
    if lab is not None:
        conn["pids"]["lab"] = lab["pid"]
        conn["lab_api"] = lab.get("lab_api")
        conn["lab_token_file"] = lab.get("lab_token_file")
        kubeconfig = lab.get("kubeconfig")
        if not kubeconfig:  # lab.json's contract has none: write one for the emulator (plain HTTP, loopback)
            kubeconfig = str(root / "kubeconfig")
            _write_kubeconfig(Path(kubeconfig), lab["kube_server"])
        conn["kubernetes"] = {"server": lab.get("kube_server"), "kubeconfig": kubeconfig}
        truenas = lab.get("truenas") or {}
        if truenas or lab.get("lab_api"):
            conn["truenas"] = {"url": truenas.get("url") or f"{lab['lab_api']}/truenas",
                               "key_file": truenas.get("key_file") or str(root / "truenas-key")}
    return conn


def clean(state_dir: str | os.PathLike | None = None) -> list[str]:
    """Remove what an earlier twin instance left behind (see the module docstring): the GitOps
    repository, every lab's private state except ``run.lock``, ``spec.json``. Returns the removed
    paths, relative to the twin's directory. The twin must not be running."""
    root = state_root(state_dir)
    removed: list[str] = []

    def rm(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            return
        removed.append(str(path.relative_to(root)))

    for repo in sorted(root.glob("gitops*")):  # the checkout, and a bare "remote" next to it if there is one
        rm(repo)
    rm(root / "spec.json")
    rm(root / "instance")
    private = root / "private"
    if private.is_dir():
        for lab in sorted(private.iterdir()):
            if not lab.is_dir():
                rm(lab)
                continue
            for entry in sorted(lab.iterdir()):
                if entry.name != "run.lock":
                    rm(entry)
    return removed


def _lock_holders(root: Path) -> list[str]:
    """The ``falkit run`` (or JupyterLab session) holding a lab's lock in this twin, if alive."""
    out = []
    for lock in sorted((root / "private").glob("*/run.lock")):
        try:
            holder = json.loads(lock.read_text())
        except (OSError, ValueError):
            continue
        pid = int(holder.get("pid") or 0)
        other_host = holder.get("host") not in (None, socket.gethostname())  # its pid means nothing here: held
        if other_host or (pid and pid != os.getpid() and Path(f"/proc/{pid}").exists()):
            out.append(f"{lock.parent.name}: pid {pid} on {holder.get('host', '?')} ({holder.get('command', '?')}, "
                       f"since {holder.get('time', '?')})")
    return out


def reset(spec_path: str | os.PathLike | dict, state: str = "auto", state_dir: str | os.PathLike | None = None,
          time_factor: float = 0.0, *, timeout: float = READY_TIMEOUT_S, quiet: bool = False) -> dict:
    """``falkit twin reset``: stop the twin if it runs, remove what it left (:func:`clean`) and start
    it again in its start state. Refused (TwinError) while a run holds one of its labs' locks."""
    root = state_root(state_dir)
    holders = _lock_holders(root)
    if holders:
        raise TwinError("the twin is in use: " + "; ".join(holders) + ". Let that run finish (or stop it) "
                        "before resetting the twin; nothing was changed.")
    down(root)
    removed = clean(root)
    conn = up(spec_path, state=state, state_dir=root, time_factor=time_factor, fresh=False, timeout=timeout,
              quiet=quiet)
    return dict(conn, removed=removed)


def up(spec_path: str | os.PathLike | dict, state: str = "auto", state_dir: str | os.PathLike | None = None,
       time_factor: float = 0.0, restore: str | os.PathLike | None = None, *, with_lab: bool = True,
       timeout: float = READY_TIMEOUT_S, fresh: bool | None = None, quiet: bool = False) -> dict:
    """Start the twin (or return the connection of the one already up); returns connection.json's data.

    ``state``: ``before`` (the pre-migration lab of ``spec.previous``), ``empty`` (a bare host), or
    ``auto``: ``before`` when the spec has a ``previous`` section, else ``empty`` (a greenfield lab).
    ``time_factor`` is fakepve's time_scale (real seconds per PVE second; 0 finishes tasks at once).
    ``restore`` is a snapshot written by :func:`snapshot`. ``fresh`` (default: true unless
    ``restore``) first removes what an earlier instance left (:func:`clean`: GitOps repository,
    private state; the returned dict lists them as ``removed``); ``fresh=False`` keeps them. Unless
    ``quiet``, says on stderr that a twin was started and how to stop it (a notebook run with
    papermill starts one and leaves it running). ``with_lab=False`` starts only the Proxmox
    half (for tests of it; ``connection.json`` then has no kubernetes/lab_api keys).
    Raises TwinError if lab_process does not exist yet, or a process does not get ready in time.
    """
    root = credentials.private_dir(state_root(state_dir))
    live = _live(root)
    conn = _read_json(root / "connection.json")
    if live and conn:
        print(f"falkit twin: already up (pids {sorted(p['pid'] for p in live['processes'].values())}), "
              f"state dir {root}", file=sys.stderr)
        return dict(conn, already_up=True)
    if live:  # processes alive but no connection file: stop them and start clean
        down(root)
    if with_lab and importlib.util.find_spec("falkit.twin.lab_process") is None:
        raise TwinError("falkit.twin.lab_process does not exist yet: the twin's Kubernetes/lab half cannot start "
                        "(use up(..., with_lab=False) for the Proxmox half alone)")
    spec_data = load_spec_any(spec_path)
    if fresh is None:
        fresh = restore is None
    removed = clean(root) if fresh else []
    restore_path = _snapshot_file(restore, root) if restore else None
    instance = _instance(root)
    if state == "auto":
        state = "before" if _as_dict(spec_data).get("previous") else "empty"
    if state not in ("before", "empty"):
        raise ValueError(f"state must be 'before', 'empty' or 'auto', not {state!r}")
    cfg = pve_config_from_spec(spec_data, state)
    cfg["time_scale"] = float(time_factor)
    config_file = root / "pve-config.json"
    _write_json(config_file, cfg)
    for name in ("pve.json", "lab.json", "connection.json"):
        (root / name).unlink(missing_ok=True)

    argvs = {"pve": [sys.executable, "-m", "falkit.twin.pve_process", "--config", str(config_file),
                     "--state-dir", str(root)]}
    if restore_path:
        argvs["pve"] += ["--restore", str(restore_path)]
    gitops_dir = _gitops_fixture(spec_path, root, state) if with_lab else None
    if with_lab:
        argvs["lab"] = [sys.executable, "-m", "falkit.twin.lab_process", "--state-dir", str(root),
                        "--state", state, "--time-factor", str(float(time_factor)),
                        "--pve-conn", str(root / "pve.json")]
        spec_file = _spec_file(spec_path, root)
        if spec_file:
            argvs["lab"] += ["--spec", str(spec_file)]
        if restore_path and Path(str(restore_path) + ".lab").is_file():
            argvs["lab"] += ["--restore", str(restore_path) + ".lab"]
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, argv in argvs.items():
            procs[name] = _spawn(name, argv, root)
        # pids.json first, so `down` can stop them even if we fail before connection.json.
        recorded = {name: {"pid": p.pid, "argv": _cmdline(p.pid) or argvs[name]} for name, p in procs.items()}
        _write_json(root / "pids.json", {"processes": recorded})
        ready = _wait_ready(procs, {name: root / f"{name}.json" for name in procs}, root, timeout)
    except BaseException:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        (root / "pids.json").unlink(missing_ok=True)
        raise
    # The cmdline as /proc shows it once the interpreter runs (what `down` compares).
    recorded = {name: {"pid": p.pid, "argv": _cmdline(p.pid) or argvs[name]} for name, p in procs.items()}
    _write_json(root / "pids.json", {"processes": recorded})
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    conn = _connection(root, ready["pve"], ready.get("lab"), started, instance)
    if ready.get("lab") and state == "before":
        _wait_settled(ready["lab"]["kube_server"], conn["kubernetes"]["kubeconfig"])
    if restore_path:
        conn["restored"] = _restore_private(root, restore_path, instance)
    if not fresh and conn.get("kubernetes"):
        _repoint_kubeconfigs(root, conn["kubernetes"]["server"], _kube_auth(conn["kubernetes"]["kubeconfig"])[1])
    if gitops_dir is not None:
        conn["gitops"] = {"checkout": str(gitops_dir), "remote": str(root / "gitops-remote.git")}
    # The tool stand-ins (talosctl, helm: falkit.twin.tools) that falkit.clients.target puts first on PATH.
    conn["bin_dir"] = str(write_tool_wrappers(root, spec_data))
    _write_json(root / "connection.json", conn, mode=0o600)
    if not quiet:
        where = f"FALKIT_STATE_DIR={root.parent} " if os.environ.get("FALKIT_STATE_DIR") else ""
        print(f"falkit twin: started a twin in its {state!r} state (state dir {root}"
              + (f"; removed what the last twin left: {', '.join(removed)}" if removed else "")
              + f"). It keeps running after this process ends: stop it with `{where}falkit twin down`",
              file=sys.stderr, flush=True)
    return dict(conn, removed=removed) if removed else conn


def _kube_auth(kubeconfig: str | os.PathLike | None) -> tuple[str | None, str | None]:
    """The bearer token and the CA (base64 PEM) of a kubeconfig written by the twin."""
    try:
        cfg = json.loads(Path(kubeconfig).read_text()) if kubeconfig else {}
    except (OSError, ValueError):
        return None, None
    users = cfg.get("users") or [{}]
    clusters = cfg.get("clusters") or [{}]
    return ((users[0].get("user") or {}).get("token"),
            (clusters[0].get("cluster") or {}).get("certificate-authority-data"))


def _wait_settled(server: str, kubeconfig: str | None = None, quiet_s: float = 1.5, timeout_s: float = 30.0) -> None:
    """Wait until the twin's controllers have built the before state: the Kubernetes store's
    resourceVersion has not moved for ``quiet_s`` (so a rehearsal never races a half-built lab)."""
    token, ca = _kube_auth(kubeconfig)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    tls = ssl.create_default_context(cadata=base64.b64decode(ca).decode()) if ca else None

    def rv() -> str | None:
        try:
            req = urllib.request.Request(f"{server}/api/v1/namespaces", headers=headers)
            with urllib.request.urlopen(req, timeout=2, context=tls) as r:  # loopback only
                return json.loads(r.read())["metadata"]["resourceVersion"]
        except (OSError, ValueError, KeyError):
            return None

    deadline = time.monotonic() + timeout_s
    last, since = rv(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = rv()
        if now != last:
            last, since = now, time.monotonic()
        elif now is not None and time.monotonic() - since >= quiet_s:
            return


def _gitops_fixture(spec_path: Any, root: Path, state: str) -> Path | None:
    """The twin's GitOps repository (the seed's layout) at ``STATE_DIR/gitops``: the operator's
    checkout stand-in that the twin's Argo CD syncs from. Made when missing: :func:`up` removes it
    first unless told to keep it (a restore), so it matches the lab the processes build. None when
    the spec has no gitops section or the state is empty."""
    spec = load_spec_any(spec_path)
    if state != "before" or getattr(spec, "gitops", None) is None:
        return None
    path = root / "gitops"
    if not (path / ".git").exists():
        make_fixture_repo(path, spec, state="before")
    make_remote(path, root / "gitops-remote.git")  # what the twin's Argo CD follows (issue 13 fault 6)
    return path


def status(state_dir: str | os.PathLike | None = None) -> dict:
    """``{"up": bool, "state_dir", "processes": {name: {"pid", "alive"}}, "connection": {...} | None}``."""
    root = state_root(state_dir)
    pids = _read_json(root / "pids.json") or {}
    procs = {name: {"pid": p["pid"], "alive": _is_ours(p["pid"], p["argv"])}
             for name, p in (pids.get("processes") or {}).items()}
    conn = _read_json(root / "connection.json")
    alive = bool(procs) and all(p["alive"] for p in procs.values())
    return {"up": alive and conn is not None, "state_dir": str(root), "processes": procs, "connection": conn}


def down(state_dir: str | os.PathLike | None = None) -> dict:
    """Stop exactly the processes ``up`` started (checked against /proc/PID/cmdline); remove connection.json.

    Returns ``{"stopped": [pids], "gone": [pids no longer ours]}``.
    """
    root = state_root(state_dir)
    pids = _read_json(root / "pids.json") or {}
    stopped, gone = [], []
    for _name, p in (pids.get("processes") or {}).items():
        (stopped if _terminate(p["pid"], p["argv"]) else gone).append(p["pid"])
    for name in ("connection.json", "pids.json", "pve.json", "lab.json"):
        (root / name).unlink(missing_ok=True)
    return {"stopped": stopped, "gone": gone}


def _snapshot_file(path: str | os.PathLike, root: Path) -> Path:
    """A snapshot to restore: ``path`` as given if it exists, else ``DIR/snapshots/<path>``."""
    p = Path(path).expanduser()
    if p.is_file():
        return p.resolve()
    inside = root / credentials.SNAPSHOT_DIR / p
    if not p.is_absolute() and inside.is_file():
        return inside.resolve()
    raise TwinError(f"no snapshot {path} (nor {inside})")


def snapshot_target(path: str | os.PathLike, state_dir: str | os.PathLike | None = None) -> Path:
    """Where ``falkit twin snapshot PATH`` writes: a relative ``PATH`` under ``DIR/snapshots/``, an
    absolute one as given; either must lie inside the twin's directory ``DIR`` (TwinError otherwise)."""
    root = state_root(state_dir)
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = root / credentials.SNAPSHOT_DIR / p
    try:
        return credentials.snapshot_path(root, p, "snapshot.json")
    except ValueError as e:
        raise TwinError(f"{e}. Give a name (written to {root / credentials.SNAPSHOT_DIR}/NAME) or a path inside "
                        f"{root}; nothing was written.") from None


def _private_files(root: Path) -> dict[str, dict[str, str]]:
    """Every lab's private state as text (``run.lock`` and the instance marker excepted)."""
    labs: dict[str, dict[str, str]] = {}
    for lab in sorted((root / "private").glob("*")):
        if not lab.is_dir():
            continue
        files = {}
        for f in sorted(lab.rglob("*")):
            rel = f.relative_to(lab).as_posix()
            if not f.is_file() or f.is_symlink() or rel in ("run.lock", "twin-started") or ".tmp." in f.name:
                continue
            try:
                files[rel] = f.read_text()
            except (OSError, UnicodeDecodeError):
                continue
        labs[lab.name] = files
    return labs


def _restore_private(root: Path, snap: Path, instance: str) -> list[str]:
    """Write the private state saved with ``snap`` back (0600 files in 0700 directories) and mark
    each lab's private directory as this twin instance's; returns the restored files (relative).
    Files not in the snapshot are kept."""
    part = Path(str(snap) + ".private")
    data = _read_json(part) if part.is_file() else None
    restored: list[str] = []
    labs = (data or {}).get("labs") or {}
    private = credentials.private_dir(root / "private")
    for lab, files in sorted(labs.items()):
        if "/" in lab or lab.startswith("."):
            continue
        lab_dir = credentials.private_dir(private / lab)
        for rel, text in sorted(files.items()):
            target = (lab_dir / rel).resolve()
            if lab_dir.resolve() not in target.parents:
                continue  # a hand-made snapshot does not write outside the lab's directory
            credentials.private_dir(target.parent)
            credentials.write_private(target, text)
            restored.append(f"private/{lab}/{rel}")
    for lab_dir in sorted(private.glob("*")):
        if lab_dir.is_dir():
            credentials.write_private(lab_dir / "twin-started", instance)
    return restored


def _repoint_kubeconfigs(root: Path, server: str, ca_data: str | None = None) -> list[str]:
    """Point the kubeconfigs kept in the private state at the twin's Kubernetes API now: a twin
    started again (restore, ``--no-fresh``) listens on a new loopback port with a new serving CA.
    Only clusters whose server is a loopback URL are changed (server and
    ``certificate-authority-data``); the credentials are kept (the restored cluster accepts them).
    Returns the files changed."""

    changed = []
    for path in sorted((root / "private").glob("*/kubeconfig*")):
        if not path.is_file() or ".tmp." in path.name:
            continue
        try:
            cfg = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(cfg, dict):
            continue
        touched = False
        for c in cfg.get("clusters") or []:
            cl = (c or {}).get("cluster") or {}
            old = str(cl.get("server") or "")
            host = urlsplit(old).hostname or ""
            if old and (host.startswith("127.") or host == "localhost"):
                new = {"server": server, **({"certificate-authority-data": ca_data} if ca_data else {})}
                if any(cl.get(k) != v for k, v in new.items()):
                    cl.pop("certificate-authority", None)
                    cl.pop("insecure-skip-tls-verify", None)
                    cl.update(new)
                    touched = True
        if touched:
            credentials.write_private(path, yaml.safe_dump(cfg, sort_keys=False))
            changed.append(str(path.relative_to(root)))
    return changed


def _instance(root: Path) -> str:
    """The twin instance (``DIR/instance``): kept while the lab continues, new after a fresh up."""
    f = root / "instance"
    try:
        text = f.read_text().strip()
    except OSError:
        text = ""
    if not text:
        text = uuid.uuid4().hex
        credentials.write_private(f, text + "\n")
    return text


def snapshot(path: str | os.PathLike, state_dir: str | os.PathLike | None = None) -> str:
    """Save the running twin: the Proxmox half to ``path``, the lab half (Kubernetes store, Talos,
    Helm, TrueNAS, volumes) to ``path`` + ``.lab``, each lab's private state to ``path`` +
    ``.private``; ``up(restore=path)`` restores all three. ``path`` must lie inside the twin's
    directory (a relative path goes to ``DIR/snapshots/``); every part is 0600. Returns the
    absolute path."""
    root = state_root(state_dir)
    conn = _read_json(root / "connection.json")
    if not conn:
        raise TwinError("the twin is not up (no connection.json)")
    target = snapshot_target(path, root)
    session = requests.Session()
    session.trust_env = False
    token = credentials.read_token(conn.get("pve_control_token_file"))
    r = session.post(conn["pve_control"] + "/snapshot", json={"path": str(target)}, timeout=30,
                     headers={"Authorization": f"Bearer {token}"} if token else {})
    if r.status_code != 200:
        raise TwinError(f"pve snapshot failed: {r.status_code} {r.text}")
    if conn.get("lab_api"):
        token = credentials.read_token(conn.get("lab_token_file"))
        lab = session.post(conn["lab_api"] + "/snapshot", json={"path": str(target) + ".lab"}, timeout=30,
                           headers={"Authorization": f"Bearer {token}"} if token else {})
        if lab.status_code != 200:
            raise TwinError(f"lab snapshot failed: {lab.status_code} {lab.text}")
    credentials.write_private_json(Path(str(target) + ".private"),
                                   {"format": "falkit-twin-private/1", "instance": conn.get("instance"),
                                    "labs": _private_files(root)})
    return r.json()["path"]
