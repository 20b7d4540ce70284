"""The lab dashboard: VMs (Proxmox), nodes, pods not Ready, Mayastor DiskPools, LoadBalancer services.

Same code on the twin and on a live lab: it reads only ``target.pve`` (proxmoxer) and
``target.kube()`` (the official ``kubernetes`` client, through :func:`falkit.clients.kube.kraw_get`: plain
GETs of the list paths, each with a timeout, answered as the API server's JSON); nothing is written.

Behaviour covered:

- ``collect()`` reads every section; a section that cannot be read becomes the string
  ``"not available: <why>"`` instead of raising. Before Talos bootstrap ``target.kube()`` raises
  ``TargetError`` ("no kubeconfig ... yet"): every Kubernetes section says so, the VM section still
  shows. When the Kubernetes API does not answer (connection refused, timeout — e.g. right after the
  configs were applied), the first failing section's reason is reused for the others instead of
  waiting for each in turn. Every Kubernetes request has a timeout (``request_timeout_s``).
- DiskPools are read as ``openebs.io/v1beta3`` then ``v1beta2`` (docs/FACTS.md: v1beta2 for Mayastor
  2.5-2.8, v1beta3 from 2.9); no DiskPool CRD yet -> an empty table, not an error.
- ``summary()`` is one line (counts); ``text()`` the headless view (printed by ``show()`` when not in
  JupyterLab); ``html()``/``widget()`` the JupyterLab view: an ``ipywidgets.HTML`` with a Refresh
  button and an auto-refresh toggle. A dashboard already shown is not displayed again as a cell's
  value (``lab.dashboard()`` returns it).
- ``refresh()`` is thread-safe; ``start(interval_s)``/``stop()`` refresh from a background thread
  (the approval gate runs it while a step applies and waits, so the dashboard moves while the
  kernel is busy in the button's callback); ``poke()`` is a rate-limited, non-blocking refresh.
- The last dashboard shown in a kernel is :meth:`Dashboard.last_shown` (the approval gate uses it
  when it was not given one).
"""

from __future__ import annotations

import threading
import time
from html import escape
from typing import Any

from ..clients.kube import ApiError, kraw_get
from ..ui.widgets import Table, interactive, last_dashboard, remember_dashboard, show

DISKPOOL_VERSIONS = ("v1beta3", "v1beta2")  # docs/FACTS.md: v1beta2 for Mayastor 2.5-2.8, v1beta3 from 2.9
NA = "not available: "


def _vms(target) -> list[dict]:
    rows = []
    for kind in ("qemu", "lxc"):
        for v in getattr(target.pve.nodes(target.node), kind).get():
            rows.append({"vmid": v.get("vmid"), "name": v.get("name"), "type": kind, "status": v.get("status"),
                         "cpus": v.get("cpus") or v.get("maxcpu"),
                         "mem_gb": round(int(v.get("maxmem") or 0) / 1024 ** 3, 1)})
    return sorted(rows, key=lambda r: int(r["vmid"]))


def _nodes(api, timeout) -> list[dict]:
    rows = []
    for n in kraw_get(api, "/api/v1/nodes", timeout).get("items") or []:
        md, st = n.get("metadata") or {}, n.get("status") or {}
        ready = next((c.get("status") for c in (st.get("conditions") or []) if c.get("type") == "Ready"), "Unknown")
        ip = next((a.get("address") for a in (st.get("addresses") or []) if a.get("type") == "InternalIP"), "")
        roles = ",".join(sorted(k.split("/", 1)[1] for k in (md.get("labels") or {})
                                if k.startswith("node-role.kubernetes.io/")))
        rows.append({"node": md.get("name"), "ready": ready == "True", "roles": roles, "ip": ip})
    return rows


def _pods_not_ready(api, timeout) -> list[dict]:
    rows = []
    for p in kraw_get(api, "/api/v1/pods", timeout).get("items") or []:
        md, st = p.get("metadata") or {}, p.get("status") or {}
        phase = st.get("phase")
        if phase == "Succeeded":
            continue
        statuses = st.get("containerStatuses") or []
        if phase == "Running" and statuses and all(c.get("ready") for c in statuses):
            continue
        reason = next((((c.get("state") or {}).get("waiting") or {}).get("reason") for c in statuses
                       if (c.get("state") or {}).get("waiting")), "") or ""
        rows.append({"pod": f"{md.get('namespace')}/{md.get('name')}", "phase": phase,
                     "node": (p.get("spec") or {}).get("nodeName"), "reason": reason})
    return rows


def _pools(api, timeout) -> list[dict]:
    for version in DISKPOOL_VERSIONS:
        try:
            items = kraw_get(api, f"/apis/openebs.io/{version}/diskpools", timeout)["items"]
        except ApiError as exc:
            if exc.status == 404:
                continue
            raise
        rows = []
        gb = 10 ** 9
        for it in items:
            st = it.get("status") or {}
            rows.append({"pool": it["metadata"]["name"], "node": (it.get("spec") or {}).get("node"),
                         "state": st.get("pool_status") or st.get("cr_state") or "",
                         "capacity_gb": round((st.get("capacity") or 0) / gb, 1),
                         "used_gb": round((st.get("used") or 0) / gb, 1)})
        return rows
    return []


def _lb_services(api, timeout) -> list[dict]:
    rows = []
    for s in kraw_get(api, "/api/v1/services", timeout).get("items") or []:
        md, spec = s.get("metadata") or {}, s.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            continue
        ann = md.get("annotations") or {}
        ingress = ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        rows.append({"service": f"{md.get('namespace')}/{md.get('name')}",
                     "requested": ann.get("lbipam.cilium.io/ips") or ann.get("io.cilium/lb-ipam-ips")
                     or ann.get("metallb.universe.tf/loadBalancerIPs") or "",
                     "ip": ",".join(i["ip"] for i in ingress if i.get("ip")) or "<pending>"})
    return rows


def _reason(exc: BaseException) -> str:
    """A one-line reason: an ApiException's status and reason, else the first line of the message."""
    status = getattr(exc, "status", None)
    if status and getattr(exc, "reason", None):
        return f"HTTP {status} {exc.reason}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unreachable(exc: BaseException) -> bool:
    """True for transport failures (no answer at all), False for an HTTP error answer."""
    return not isinstance(exc, ApiError)


class Dashboard:
    """The lab at a glance (see the module docstring)."""

    SECTIONS = ("vms", "nodes", "pods_not_ready", "diskpools", "loadbalancers")
    TITLES = {"vms": "VMs and containers", "nodes": "Kubernetes nodes", "pods_not_ready": "Pods not Ready",
              "diskpools": "Mayastor DiskPools", "loadbalancers": "LoadBalancer services"}

    def __init__(self, target: Any, *, request_timeout_s: float = 5.0):
        self.target = target
        self.request_timeout_s = request_timeout_s
        self.data: dict[str, list[dict] | str] = {}
        self.updated: float | None = None
        self.refreshes = 0
        self._html = None
        self._widget = None
        self._toggle = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._poking = False
        self._shown = False

    # -- reading -----------------------------------------------------------------------------------
    def collect(self) -> dict[str, list[dict] | str]:
        """Read every section (never raises; unreadable sections say why)."""
        out: dict[str, list[dict] | str] = {}
        try:
            out["vms"] = _vms(self.target)
        except Exception as exc:  # shown, not raised: the dashboard reports what it cannot read
            out["vms"] = NA + _reason(exc)
        try:
            api = self.target.kube()
        except Exception as exc:  # before bootstrap: TargetError "no kubeconfig ... yet"
            for key in self.SECTIONS[1:]:
                out[key] = NA + _reason(exc)
            return out
        t = self.request_timeout_s
        readers = {"nodes": lambda: _nodes(api, t), "pods_not_ready": lambda: _pods_not_ready(api, t),
                   "diskpools": lambda: _pools(api, t), "loadbalancers": lambda: _lb_services(api, t)}
        down: str | None = None
        for key, fn in readers.items():
            if down is not None:
                out[key] = down
                continue
            try:
                out[key] = fn()
            except Exception as exc:
                out[key] = NA + _reason(exc)
                if _unreachable(exc):
                    down = NA + "Kubernetes API not answering: " + _reason(exc)
                    out[key] = down
        return out

    def refresh(self) -> Dashboard:
        """Re-read the lab and update the widget (if shown). Thread-safe."""
        data = self.collect()
        with self._lock:
            self.data = data
            self.updated = time.time()
            self.refreshes += 1
            if self._html is not None:
                self._html.value = self.html()
        return self

    def poke(self, min_interval_s: float = 1.0) -> None:
        """Refresh in a background thread unless one is running or the last refresh is recent."""
        if self._poking or (self.updated is not None and time.time() - self.updated < min_interval_s):
            return
        self._poking = True

        def run() -> None:
            try:
                self.refresh()
            except Exception:  # a failed refresh keeps the last view
                pass
            finally:
                self._poking = False

        threading.Thread(target=run, name="falkit-dashboard-poke", daemon=True).start()

    # -- views -------------------------------------------------------------------------------------
    def tables(self) -> list[Table | str]:
        if not self.data:
            self.refresh()
        out: list[Table | str] = []
        for key in self.SECTIONS:
            v = self.data.get(key, [])
            if isinstance(v, str):
                out.append(f"{self.TITLES[key]}: {v}")
            else:
                out.append(Table(v, title=self.TITLES[key], status_column="ready" if key == "nodes" else None))
        return out

    def summary(self) -> str:
        """One line: VMs running, nodes Ready, pods not Ready, pool capacity, LB IPs assigned."""
        if not self.data:
            self.refresh()
        d = self.data
        parts = []
        vms = d.get("vms")
        parts.append(f"{sum(1 for v in vms if v['status'] == 'running')}/{len(vms)} VMs running"
                     if isinstance(vms, list) else "VMs not available")
        nodes = d.get("nodes")
        if isinstance(nodes, list):
            parts.append(f"{sum(1 for n in nodes if n['ready'])}/{len(nodes)} nodes Ready")
            pods = d.get("pods_not_ready")
            if isinstance(pods, list):
                parts.append(f"{len(pods)} pod(s) not Ready")
            pools = d.get("diskpools")
            if isinstance(pools, list):
                cap = sum(p["capacity_gb"] for p in pools)
                used = sum(p["used_gb"] for p in pools)
                parts.append(f"{len(pools)} DiskPool(s) {used:g}/{cap:g} GB used")
            lbs = d.get("loadbalancers")
            if isinstance(lbs, list):
                parts.append(f"{sum(1 for s in lbs if s['ip'] != '<pending>')}/{len(lbs)} LoadBalancer IPs assigned")
        else:
            parts.append("Kubernetes not available")
        return " · ".join(parts)

    def _stamp(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.updated)) if self.updated else "never"

    def text(self) -> str:
        """The headless view: a header line, then each section as a text table (or why it is missing)."""
        body = "\n\n".join(str(t) for t in self.tables())
        return f"Lab dashboard ({self._stamp()}): {self.summary()}\n\n{body}"

    def html(self) -> str:
        parts = [t._repr_html_() if isinstance(t, Table) else f"<p class='falkit-na'>{escape(t)}</p>"
                 for t in self.tables()]
        head = (f"<p><b>Lab dashboard</b> <span style='color:#666'>(updated {self._stamp()})</span>: "
                f"{escape(self.summary())}</p>")
        return f"<div class='falkit-dashboard'>{head}{''.join(parts)}</div>"

    def _ipython_display_(self) -> None:
        """Displaying a dashboard shows it once: ``lab.dashboard()`` returns the dashboard it just
        showed, and as a cell's last value it would otherwise appear a second time (a stale copy)."""
        if not self._shown:
            self.show()

    def __repr__(self) -> str:
        return self.text()

    def widget(self):
        """The JupyterLab view: Refresh button, auto-refresh toggle and the HTML (created once)."""
        import ipywidgets as w  # noqa: PLC0415 - only in JupyterLab; the CLI and the HTML view never load it

        if self._widget is None:
            self._html = w.HTML(self.html())
            button = w.Button(description="Refresh", icon="refresh")
            button.on_click(lambda _b: self.refresh())
            self._toggle = w.ToggleButton(value=False, description="Auto-refresh", icon="clock-o",
                                          tooltip="refresh every 2 s")
            self._toggle.observe(lambda ch: self.start(2.0) if ch["new"] else self.stop(), names="value")
            self._widget = w.VBox([w.HBox([button, self._toggle]), self._html])
            self._widget.add_class("falkit-dashboard-widget")
        return self._widget

    def show(self) -> Dashboard:
        """Refresh, then display the widget (JupyterLab) or print the text (headless)."""
        self._shown = True
        self.refresh()
        if interactive():
            show(self.widget())
            remember_dashboard(self)
        else:
            show(self.text())
        return self

    @staticmethod
    def last_shown() -> Dashboard | None:
        """The last dashboard displayed as a widget in this kernel (None if none, or collected)."""
        return last_dashboard()

    # -- background refresh ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, interval_s: float = 2.0) -> None:
        """Refresh every ``interval_s`` in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:  # a failed refresh keeps the last view
                    pass

        self._thread = threading.Thread(target=loop, name="falkit-dashboard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None
        if self._toggle is not None and self._toggle.value:
            self._toggle.value = False
