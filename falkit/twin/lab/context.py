"""``LabContext``: the state the twin's lab shares between the lab API and every controller.

One ``LabContext`` lives in the lab process (``falkit.twin.lab.api.install`` builds it). Controllers
are ``async def run(ctx: LabContext)`` coroutines; they read the Kubernetes objects from
``ctx.store`` (the emulator's in-process :class:`falkit.twin.kube.Store`, not over HTTP), the
Proxmox state from ``ctx.pve`` (the twin's Proxmox over HTTPS, read-only) and the lab's own state
(Talos nodes, Helm releases, volume data, faults) from the fields below.

Conventions for controllers:

* loop with ``await ctx.wait_change()``: it returns when the store changed, the lab API changed
  something (``ctx.notify()``), the twin's Proxmox changed (:mod:`.pvewatch`), or one of this
  controller's own deadlines came (``ctx.due``/``ctx.wake_in``/``ctx.wake_at``) — whichever is
  first. There is no fixed tick (issue 17: an idle twin must not burn CPU): a controller that
  waits on time says so with a deadline. A change that happens while a controller is in its pass
  is not lost: each controller remembers the change generation it last saw;
* real-lab durations go through ``await ctx.sleep(seconds)`` or ``ctx.due(key, seconds)`` (scaled
  by ``time_factor``; 0 means "at once"; a ``due`` that is not yet due wakes the calling controller
  when it is);
* never block the event loop (``ctx.pve`` methods are ``async``);
* write Kubernetes objects with ``field_manager`` set to the controller's name.

Everything but ``store``/``pve`` is plain data that ``dump()`` / ``load()`` round-trip as JSON for
``POST /lab/snapshot`` and ``lab_process --restore``.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from falkit.twin.tools.chartrepos import chart_key

if TYPE_CHECKING:  # pragma: no cover
    from falkit.model.spec import LabSpec
    from falkit.twin.kube import Store

    from .pvereader import PveReader

SNAPSHOT_FORMAT = "falkit-lab/1"

#: The controller the running task (or its worker thread) belongs to; None outside a controller.
_CONTROLLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("falkit_twin_controller", default=None)


def _key() -> str | None:
    """Who is asking: the named controller, else the running asyncio task, else None (a thread
    outside any controller)."""
    name = _CONTROLLER.get()
    if name is not None:
        return name
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return None
    return None if task is None else f"task:{id(task)}"


def _lease_renewal(etype: str, obj: dict, old: dict | None) -> bool:
    """True for an update of a Lease that changed its ``spec.renewTime`` and nothing else a
    controller reads (holder, duration, transitions): Cilium's agent renews its L2 announcement
    leases every retry period; that alone must not wake every controller."""
    if etype != "MODIFIED" or old is None or obj.get("kind") != "Lease":
        return False
    a, b = dict(obj.get("spec") or {}), dict(old.get("spec") or {})
    a.pop("renewTime", None)
    b.pop("renewTime", None)
    return a == b and (obj.get("metadata") or {}).get("labels") == (old.get("metadata") or {}).get("labels")
HUGEPAGE_2MI = 2 * 1024 * 1024

#: Annotation on a Deployment/DaemonSet naming the twin controller that makes its Pods when it is
#: not the generic one (falkit.twin.lab.workloads), e.g. ``mayastor`` for the io-engine and
#: csi-node DaemonSets the Helm stand-in creates.
POD_CONTROLLER = "falkit.twin/controller"


def module_name(name: str) -> str:
    """The kernel's name of a module: ``nvme-tcp`` and ``nvme_tcp`` are one module (modprobe treats
    ``-`` and ``_`` alike; /proc/modules lists the ``_`` form). docs/UPSTREAM.md, Mayastor."""
    return name.strip().replace("-", "_")


@dataclass
class TalosNode:
    """One Talos machine as the twin knows it, keyed in ``ctx.talos_nodes`` by the IP talosctl
    reaches it at (``--nodes IP``).

    Fields (all derived from the applied machine config by ``falkit.twin.lab.talos``):

    - ``ip``: the address the node answers on (the management IP);
    - ``vmid``: the twin Proxmox VM behind it (found by the spec's MAC for ``ip``), None if unknown;
    - ``docs``: the applied machine-config documents (parsed YAML, in order); ``[]`` = maintenance
      mode (never configured);
    - ``mode``: ``"maintenance"`` (no config), ``"installing"`` (config applied, Talos installing and
      rebooting until ``ready_at``), ``"running"``;
    - ``machine_type``: ``"controlplane"`` | ``"worker"`` (``machine.type``);
    - ``hostname``: ``machine.network.hostname`` (< 1.12) or the ``HostnameConfig`` document; if
      neither, Talos' default ``talos-<xxx>-<yyy>`` derived from the IP;
    - ``addresses``: interface -> list of CIDR addresses (inline ``machine.network.interfaces`` for
      Talos < 1.12, ``LinkConfig`` / ``DHCPv4Config``-less static addresses for 1.12+); always
      includes ``ip`` (DHCP on the first NIC) unless the config gives it explicitly;
    - ``labels``: ``machine.nodeLabels`` (e.g. ``openebs.io/engine: mayastor``);
    - ``kernel_modules``: module names as the kernel lists them (``nvme-tcp`` -> ``nvme_tcp``);
    - ``sysctls``: ``machine.sysctls`` (strings, as in the config); see :attr:`hugepages`;
    - ``extra_mounts``: ``machine.kubelet.extraMounts`` (dicts as in the config);
    - ``cluster_name``: ``cluster.clusterName``;
    - ``talos_version``: the Talos version the node runs (``spec.versions.talos``);
    - ``applied_at`` / ``ready_at``: wall-clock seconds (``time.time()``) when the config was
      applied and when the install + reboot is over (scaled by ``time_factor``);
    - ``boot_id``: changes on every (re)boot the twin simulates;
    - ``vm_uuid``: the VM's SMBIOS uuid when the config was applied (a re-created VM has another
      one and boots into maintenance mode again: its disk is new).
    """

    ip: str
    vmid: int | None = None
    docs: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "maintenance"
    machine_type: str = "worker"
    hostname: str = ""
    addresses: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    kernel_modules: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    extra_mounts: list[dict[str, Any]] = field(default_factory=list)
    cluster_name: str = ""
    talos_version: str = ""
    applied_at: float = 0.0
    ready_at: float = 0.0
    boot_id: str = ""
    vm_uuid: str = ""

    @property
    def hugepages(self) -> int:
        """2 MiB hugepages configured (``vm.nr_hugepages``; 0 when unset or not a number)."""
        try:
            return int(str(self.sysctls.get("vm.nr_hugepages", "0")).strip())
        except ValueError:
            return 0

    @property
    def hugepages_bytes(self) -> int:
        return self.hugepages * HUGEPAGE_2MI

    @property
    def ips(self) -> list[str]:
        """Every IPv4 address of the node (management first), without prefix lengths."""
        out = [self.ip]
        for addrs in self.addresses.values():
            for a in addrs:
                ip = a.split("/", 1)[0]
                if ip not in out:
                    out.append(ip)
        return out

    def has_module(self, name: str) -> bool:
        return module_name(name) in self.kernel_modules

    @property
    def configured(self) -> bool:
        return bool(self.docs)

    def is_ready(self, now: float | None = None) -> bool:
        """Config applied and the install/reboot finished (mode running)."""
        return self.mode == "running" or (self.mode == "installing" and (now or time.time()) >= self.ready_at)


@dataclass
class Release:
    """A Helm release (``helm list`` / ``helm get values``) and what the twin made of it.

    - ``namespace``, ``name``, ``chart`` (e.g. ``cilium``, ``openebs``, ``mayastor``), ``version``;
    - ``values``: the user-supplied values (as ``helm get values``);
    - ``revision``: 1 on install, +1 on every upgrade that changes chart/version/values;
    - ``status``: ``deployed`` | ``failed`` | ``uninstalling``;
    - ``history``: one dict per revision ``{revision, chart, version, values, status, updated}``;
    - ``updated``: ISO time of the last revision;
    - ``objects``: ``[[apiVersion, kind, namespace, name], ...]`` the chart created (uninstall
      deletes them); ``notes``: what the chart stand-in recorded (e.g. Cilium's effective config).
    """

    namespace: str
    name: str
    chart: str
    version: str
    values: dict[str, Any] = field(default_factory=dict)
    revision: int = 1
    status: str = "deployed"
    history: list[dict[str, Any]] = field(default_factory=list)
    updated: str = ""
    objects: list[list[str]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """The JSON the lab API answers for a release."""
        return {"name": self.name, "namespace": self.namespace, "chart": self.chart, "version": self.version,
                "values": self.values, "revision": self.revision, "status": self.status, "updated": self.updated}


@dataclass
class VolumeData:
    """The data on one PersistentVolume, as the twin models it (``ctx.volumes[pv_name]``).

    - ``pv``: PV name; ``namespace``/``claim``: the PVC it is bound to (may be empty);
    - ``driver``: CSI driver (``driver.longhorn.io``, ``io.openebs.csi-mayastor``);
    - ``size_bytes``: capacity; ``used_bytes``: bytes written;
    - ``checksum``: sha256 hex of the content (a copy keeps it; a loss changes or clears it);
    - ``replicas``: nodes (or pools) holding a replica; ``state``: ``healthy`` | ``degraded`` |
      ``faulted`` | ``lost``.
    """

    pv: str
    namespace: str = ""
    claim: str = ""
    driver: str = ""
    size_bytes: int = 0
    used_bytes: int = 0
    checksum: str = ""
    replicas: list[str] = field(default_factory=list)
    state: str = "healthy"


@dataclass
class LabFaults:
    """Faults injected through ``POST /lab/faults`` that controllers must honour.

    - ``node_not_ready``: node names (Kubernetes Node names) whose kubelet stops posting status;
    - ``diskpool_degraded``: DiskPool names to report Degraded;
    - ``io_engine_crash``: node names whose io-engine pod crashes (CrashLoopBackOff);
    - ``talos_apply_error``: node IP -> message ``POST /lab/talos/apply`` answers with (500);
    - ``corrupt_copy``: target claims ``ns/name`` (or ``*``) whose copy Job writes different data;
    - ``storage_link_down``: node names whose storage-network NIC has no link (ping Jobs fail);
    - ``argocd_sync_race``: Application name -> the ``syncPolicy.automated`` of the Application
      controller's cached copy, frozen when the fault was injected (:mod:`.argocd`);
    - ``kube_http``: records of HTTP error bursts handed to the emulator (``store.faults``), for
      ``GET /lab/faults`` only.
    """

    node_not_ready: set[str] = field(default_factory=set)
    diskpool_degraded: set[str] = field(default_factory=set)
    io_engine_crash: set[str] = field(default_factory=set)
    talos_apply_error: dict[str, str] = field(default_factory=dict)
    kube_http: list[dict[str, Any]] = field(default_factory=list)
    corrupt_copy: set[str] = field(default_factory=set)
    storage_link_down: set[str] = field(default_factory=set)
    argocd_sync_race: dict[str, dict[str, Any]] = field(default_factory=dict)

    def clear(self) -> None:
        self.argocd_sync_race.clear()
        self.corrupt_copy.clear()
        self.storage_link_down.clear()
        self.node_not_ready.clear()
        self.diskpool_degraded.clear()
        self.io_engine_crash.clear()
        self.talos_apply_error.clear()
        self.kube_http.clear()

    def to_json(self) -> dict[str, Any]:
        return {"node_not_ready": sorted(self.node_not_ready), "diskpool_degraded": sorted(self.diskpool_degraded),
                "io_engine_crash": sorted(self.io_engine_crash), "talos_apply_error": dict(self.talos_apply_error),
                "kube_http": list(self.kube_http), "corrupt_copy": sorted(self.corrupt_copy),
                "storage_link_down": sorted(self.storage_link_down),
                "argocd_sync_race": dict(self.argocd_sync_race)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LabFaults:
        return cls(set(d.get("node_not_ready") or ()), set(d.get("diskpool_degraded") or ()),
                   set(d.get("io_engine_crash") or ()), dict(d.get("talos_apply_error") or {}),
                   list(d.get("kube_http") or ()), set(d.get("corrupt_copy") or ()),
                   set(d.get("storage_link_down") or ()), dict(d.get("argocd_sync_race") or {}))


@dataclass(frozen=True)
class CiliumConfig:
    """The effective configuration of the installed Cilium release (``ctx.cilium_config()``).

    Defaults are the chart's: ``kubeProxyReplacement`` false, ``l2announcements.enabled`` false,
    ``externalIPs.enabled`` false, client rate limit 5 qps / burst 10 (docs/UPSTREAM.md, Cilium), ``devices``
    empty (= auto-detect). ``lease_*`` are ``l2announcements.lease*`` in seconds (15 / 5 / 2).
    """

    version: str
    kube_proxy_replacement: bool = False
    l2_announcements: bool = False
    external_ips: bool = False
    qps: int = 5
    burst: int = 10
    devices: tuple[str, ...] = ()
    lease_duration_s: float = 15.0
    lease_renew_deadline_s: float = 5.0
    lease_retry_period_s: float = 2.0


def helm_value(values: dict, dotted: str, default: Any = None) -> Any:
    """``values["a"]["b"]`` for ``"a.b"`` (a chart's values path), or ``default`` when absent."""
    cur: Any = values
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() in ("true", "strict"))


def cilium_effective_config(release: Release) -> CiliumConfig:
    """Cilium's effective settings from the release values (chart defaults otherwise)."""
    v = release.values
    rl = v.get("k8sClientRateLimit") or {}
    devices = v.get("devices") or ()
    if isinstance(devices, str):
        devices = tuple(d for d in devices.replace(",", " ").split() if d)

    def secs(key: str, default: float) -> float:
        raw = helm_value(v, key)
        if raw is None:
            return default
        s = str(raw).strip()
        try:
            return float(s[:-1]) if s.endswith("s") else float(s)
        except ValueError:
            return default

    return CiliumConfig(
        version=release.version,
        kube_proxy_replacement=_truthy(v.get("kubeProxyReplacement", False)),
        l2_announcements=_truthy(helm_value(v, "l2announcements.enabled", False)),
        external_ips=_truthy(helm_value(v, "externalIPs.enabled", False)),
        qps=int(rl.get("qps") or 5), burst=int(rl.get("burst") or 10), devices=tuple(devices),
        lease_duration_s=secs("l2announcements.leaseDuration", 15.0),
        lease_renew_deadline_s=secs("l2announcements.leaseRenewDeadline", 5.0),
        lease_retry_period_s=secs("l2announcements.leaseRetryPeriod", 2.0))


class LabContext:
    """Shared lab state. Construct with ``LabContext(store, spec, state_dir, pve, time_factor)``.

    - ``store``: the emulator's in-process object store (``falkit.twin.kube.Store``);
    - ``spec``: the lab spec (``falkit.model.spec.LabSpec``);
    - ``state_dir``: the twin's state directory (``Path``);
    - ``pve``: a :class:`~falkit.twin.lab.pvereader.PveReader` (None: no Proxmox; every Talos node
      then refuses connections);
    - ``time_factor``: real seconds per lab second (0 in tests: every lab duration is instant);
    - ``kube_server``: the emulator's URL once known (``None``: the lab API derives it from the
      request);
    - ``talos_nodes``: IP -> :class:`TalosNode`;
    - ``bootstrapped``: etcd bootstrapped, the Kubernetes API is up (before it the emulator answers
      503 to the official client — ``store.faults.down``);
    - ``bootstrap_ip``: the control-plane IP bootstrap ran on;
    - ``releases``: ``(namespace, name)`` -> :class:`Release`;
    - ``volumes``: PV name -> :class:`VolumeData`;
    - ``faults``: :class:`LabFaults`;
    - ``tick``: None (default): a controller waits for a change or its next deadline, however
      long; a number: it also wakes at least every ``tick`` seconds (a fallback poll; nothing in
      the twin needs it since issue 17) -- a store change wakes every controller at once;
    - ``extra``: free-form JSON-able dict for controllers' own persistent state (one key per
      controller module, e.g. ``ctx.extra["mayastor"]``); dumped and loaded with the rest.
    """

    def __init__(self, store: Store, spec: LabSpec, state_dir: str | Path = ".", pve: PveReader | None = None,
                 time_factor: float = 0.0) -> None:
        self.store = store
        self.spec = spec
        self.state_dir = Path(state_dir)
        self.pve = pve
        self.time_factor = float(time_factor)
        self.kube_server: str | None = None
        self.talos_nodes: dict[str, TalosNode] = {}
        self.bootstrapped = False
        self.bootstrap_ip: str | None = None
        self.releases: dict[tuple[str, str], Release] = {}
        self.volumes: dict[str, VolumeData] = {}
        self.faults = LabFaults()
        self.tick: float | None = None
        self.extra: dict[str, Any] = {}
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe = None
        self._dues: dict[str, float] = {}
        self._gen = 0  # change generation: bumped by every store change / notify()
        self._seen: dict[str, int] = {}  # controller -> the generation it last woke for
        self._wakes: dict[str, list[float]] = {}  # controller -> its deadlines (time.monotonic())

    # --- time ------------------------------------------------------------------------------------

    def scaled(self, lab_seconds: float) -> float:
        """Real seconds for a real-lab duration."""
        return max(0.0, float(lab_seconds) * self.time_factor)

    async def sleep(self, lab_seconds: float) -> None:
        """Wait a real-lab duration scaled by ``time_factor`` (0: only yield to the loop)."""
        delay = self.scaled(lab_seconds)
        await asyncio.sleep(delay)

    def due(self, key: str, lab_seconds: float) -> bool:
        """Non-blocking timer: False until ``lab_seconds`` (scaled) after the first call with
        ``key``, then True. ``forget(key)`` restarts it. For "Ready ~30 s after the CNI" logic in a
        controller loop without blocking the loop."""
        now = time.monotonic()
        start = self._dues.setdefault(key, now)
        when = start + self.scaled(lab_seconds)
        if when > now:
            self.wake_at_monotonic(when)  # come back when it is due (there is no tick to notice it)
        return when <= now

    def forget(self, key: str) -> None:
        self._dues.pop(key, None)

    def elapse(self, key: str) -> None:
        """Make ``due(key, ...)`` true at once (state that is already settled, e.g. "before")."""
        self._dues[key] = float("-inf")

    def wake_in(self, seconds: float) -> None:
        """Wake the calling controller (or, outside one, every controller) after ``seconds`` real
        seconds, even if nothing changes: a scheduled deadline instead of a tick. Safe from the
        controller's worker threads (``asyncio.to_thread`` keeps the controller's context)."""
        self.wake_at_monotonic(time.monotonic() + max(0.0, seconds))

    def wake_at(self, wall_time: float) -> None:
        """:meth:`wake_in` for a ``time.time()`` deadline (e.g. a Talos node's ``ready_at``)."""
        self.wake_in(wall_time - time.time())

    def wake_at_monotonic(self, when: float) -> None:
        """:meth:`wake_in` for a ``time.monotonic()`` deadline (one entry per distinct deadline)."""
        key = _key()
        if key is None:  # not a controller (a lab API handler): wake everyone then, as a change
            delay = max(0.0, when - time.monotonic())

            def later() -> None:
                try:
                    asyncio.get_running_loop().call_later(delay, self.notify)
                except RuntimeError:
                    pass  # no event loop (a LabContext driven by hand): nothing waits
            self._from_any_thread(later)
            return
        wakes = self._wakes.setdefault(key, [])
        if when not in wakes:
            wakes.append(when)

    # --- change notification --------------------------------------------------------------------

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _bump(self) -> None:
        """A change: advance the generation and wake every waiter (on the loop's thread)."""
        self._gen += 1
        ev = self._event()
        self._changed = asyncio.Event()  # the next waiters wait on a fresh event
        ev.set()

    def _from_any_thread(self, fn) -> None:  # noqa: ANN001
        loop = self._loop
        try:
            if loop is None or asyncio.get_running_loop() is loop:
                fn()
                return
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(fn)

    def attach(self) -> None:
        """Subscribe to store changes (called by ``install`` on startup, inside the event loop)."""
        self._event()
        self._loop = asyncio.get_running_loop()

        def on_change(etype: str, obj: dict, old: dict | None) -> None:
            if _lease_renewal(etype, obj, old):
                return  # a Lease's renewTime moved, nothing else: no controller reads that
            self._from_any_thread(self._bump)

        if self._unsubscribe is None:
            self._unsubscribe = self.store.subscribe(on_change)
        self._bump()  # every controller makes a first pass

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def notify(self) -> None:
        """Wake every controller waiting in :meth:`wait_change` (the lab API calls it; so does
        :mod:`.pvewatch` when the twin's Proxmox changed). Safe from any thread."""
        self._from_any_thread(self._bump)

    def enter_controller(self, name: str) -> None:
        """Name the running task's controller: its deadlines and seen generation are its own
        (``falkit.twin.lab.api`` calls it once per controller task)."""
        _CONTROLLER.set(name)

    async def wait_change(self, timeout: float | None = None) -> bool:
        """Wait until something changed since this controller last woke (True), or until its
        next deadline / ``timeout`` / ``tick`` came (False). Several controllers may wait at once;
        all of them wake on a change; one that was busy in its pass when the change came returns
        at once."""
        key = _key()
        if self._seen.get(key, -1) != self._gen:
            self._seen[key] = self._gen
            await asyncio.sleep(0)
            return True
        now = time.monotonic()
        wakes = self._wakes.get(key, [])
        wakes[:] = [w for w in wakes if w > now]
        limits = [now + t for t in (timeout, self.tick) if t is not None] + wakes
        ev = self._event()
        loop = asyncio.get_running_loop()
        try:  # asyncio.timeout, not wait_for: wait_for can swallow a cancellation on 3.11 (gh-86296)
            async with asyncio.timeout_at(loop.time() + (min(limits) - now) if limits else None):
                await ev.wait()
        except TimeoutError:
            return False
        self._seen[key] = self._gen
        await asyncio.sleep(0)
        return True

    # --- queries --------------------------------------------------------------------------------

    def release_of(self, chart: str) -> Release | None:
        """The deployed release of ``chart`` (a ``charts.CHARTS`` key such as ``cilium``, ``metallb``,
        ``openebs``, ``mayastor``, ``longhorn``, ``argo-cd``; ``cilium/cilium`` works too), first by
        namespace/name, or None."""
        for key in sorted(self.releases):
            r = self.releases[key]
            if chart_key(r.chart) == chart_key(chart) and r.status == "deployed":
                return r
        return None

    def cilium_config(self) -> CiliumConfig | None:
        """The installed Cilium's effective config, or None when Cilium is not installed. The
        LB-IPAM controller refuses L2 announcements unless ``kube_proxy_replacement`` and
        ``l2_announcements`` are both true (docs/UPSTREAM.md, Cilium)."""
        r = self.release_of("cilium")
        return None if r is None else cilium_effective_config(r)

    def node_by_hostname(self, hostname: str) -> TalosNode | None:
        return next((n for n in self.talos_nodes.values() if n.hostname == hostname), None)

    def node_by_vmid(self, vmid: int) -> TalosNode | None:
        return next((n for n in self.talos_nodes.values() if n.vmid == vmid), None)

    # --- snapshot -------------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """The lab's own state as JSON-able data (the kube store is dumped separately)."""
        return {"format": SNAPSHOT_FORMAT,
                "bootstrapped": self.bootstrapped, "bootstrap_ip": self.bootstrap_ip,
                "talos_nodes": {ip: asdict(n) for ip, n in self.talos_nodes.items()},
                "releases": [asdict(r) for r in self.releases.values()],
                "volumes": {k: asdict(v) for k, v in self.volumes.items()},
                "faults": self.faults.to_json(), "extra": self.extra}

    def load(self, data: dict[str, Any]) -> None:
        """Replace the lab state with a :meth:`dump` result."""
        if data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"not a {SNAPSHOT_FORMAT} lab snapshot")
        self.bootstrapped = bool(data.get("bootstrapped"))
        self.bootstrap_ip = data.get("bootstrap_ip")
        self.talos_nodes = {ip: TalosNode(**n) for ip, n in (data.get("talos_nodes") or {}).items()}
        self.releases = {(r["namespace"], r["name"]): Release(**r) for r in data.get("releases") or []}
        self.volumes = {k: VolumeData(**v) for k, v in (data.get("volumes") or {}).items()}
        self.faults = LabFaults.from_json(data.get("faults") or {})
        self.extra = dict(data.get("extra") or {})
        self._dues.clear()
