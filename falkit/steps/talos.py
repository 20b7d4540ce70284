"""Step 30-talos: machine configs applied, etcd bootstrapped once, kubeconfig fetched, cluster healthy.

Everything goes through ``target.talos`` (:class:`falkit.clients.backends.talos.Talos`: ``talosctl``; on the
twin its stand-in, first on PATH). docs/ARCHITECTURE.md "Talos" has the texts it reads and why.

- **observe**: the secrets bundle from the private state dir — ``talos-secrets.yaml`` (falkit's,
  saved once), else an existing cluster's secrets imported from ``secrets.yaml``, ``controlplane.yaml``
  or ``terraform.tfstate`` (:data:`IMPORT_FILES`), else a fresh one in memory; with its talosconfig
  (saved, or a temporary 0600 file) per node ``talosctl version`` at its planned IP — and, if that
  does not answer, at its pre-migration IP (``spec.previous.nodes``) — then ``get machineconfig``
  when it is configured. A node answering the talosconfig with x509's "unknown authority" and
  ``--insecure`` with the maintenance service's "not implemented in maintenance mode" is in
  maintenance mode; one answering ``--insecure`` with "certificate required" belongs to a cluster of
  another CA. Bootstrapped = ``talosctl service etcd`` Running on the control plane; health
  (``talosctl health``) when it is; whether the private kubeconfig exists; running VMs whose node
  answers nowhere (DHCP gave it another address).
- **plan** (pure): **refused** (StepError) when a node runs a cluster of another CA, when the spec
  has a ``previous`` cluster but no secrets were found (never new secrets for a cluster that
  exists: the message names the files and the directory), or when a running VM's node does not
  answer at its planned IP (reserve the IPs for the MACs on the DHCP server). Otherwise: save the
  secrets bundle (once; "imported from ..." when it was), write the talosconfig; ``apply-config``
  per node whose running config differs from the generated one (``--insecure`` in maintenance
  mode; a configured node is **disruptive**: it may reboot or change address), with a readable
  summary diff (modules, sysctls, addresses, labels, mounts); ``bootstrap`` once (its
  AlreadyExists counts as done); fetch the kubeconfig; wait for health. A node that answers
  nowhere and has no running VM is a note, not a change.
- **apply**: validates every document against the Talos schema first (falkit.model.schemas), then does
  exactly the plan's changes; secrets, talosconfig and kubeconfig go only to the private dir (0600)
  via ``target.write_private``. Each change carries a typed payload (:mod:`falkit.plan.payloads`:
  ``TalosSecrets``, ``TalosClientConfig``, ``TalosApplyConfig``, ``TalosBootstrap``,
  ``TalosKubeconfig``, ``TalosHealth``) carried out by its executor here; the secrets bundle and
  each machine config ride in a :class:`falkit.plan.payloads.Sealed` (never shown, never archived), and
  apply reads no spec.
- **checks**: each node runs the planned config (digest), ``nvme_tcp`` in /proc/modules and
  HugePages_Total on workers, health ok.

A new cluster has no CNI until 40-cilium installs Cilium (``cluster.network.cni.name: none``, as
Talos' Cilium guide sets it), so its nodes stay NotReady with kubelet's "NetworkPluginNotReady" and
talosctl 1.11/1.12's health stops at "all k8s nodes to report ready" (1.13 skips that check when the
CNI is disabled). Health counts as reached when that is the *only* thing failing
(:func:`cni_pending`): every other check passes and every NotReady Node says its network plugin is
not ready — checked on the Node objects through the Kubernetes API, live and on the twin alike. Each
health probe is ``talosctl health --wait-timeout`` of at most :data:`HEALTH_PROBE_S` inside the
step's wait (the subprocess may run longer than its wait-timeout, never shorter). 40-cilium then
waits for Ready; the Cilium values reach the API server through KubePrism (localhost:7445), which
every config here enables (falkit.render.talosconfig).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from ..clients.backends import BackendError
from ..clients.backends.talos import ForeignCAError
from ..clients.kube import WaitTimeoutError, klist, wait_for
from ..model.design import design_of
from ..model.errors import StepError
from ..model.schemas import load_documents
from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan
from ..plan.payloads import (
    Sealed,
    TalosApplyConfig,
    TalosBootstrap,
    TalosClientConfig,
    TalosHealth,
    TalosKubeconfig,
    TalosSecrets,
)
from ..render.talosconfig import (
    VANILLA_SCHEMATIC,
    SecretsBundle,
    client_config,
    config_digest,
    module_name,
    new_secrets,
    render,
    summary_diff,
    talosconfig,
)
from .base import Check, Progress, StepOptions, register
from .executors import Apply, execute, executes

SECRETS_FILE = "talos-secrets.yaml"
#: Where an operator puts an existing cluster's identity, in the private state dir (docs/ARCHITECTURE.md,
#: "Existing cluster identity"), in the order falkit looks: talosctl's secrets bundle (``talosctl gen
#: secrets`` / ``gen config``'s secrets.yaml), a control-plane machine config, a Terraform state.
IMPORT_FILES = ("secrets.yaml", "controlplane.yaml", "terraform.tfstate")
HEALTH_PROBE_S = 120.0  # one `talosctl health --wait-timeout` probe inside the step's wait


def import_secrets(target: Any) -> tuple[SecretsBundle | None, str]:
    """The existing cluster's secrets from the private dir: ``(bundle, file name)`` or ``(None, "")``."""
    for name in IMPORT_FILES:
        text = target.read_private(name)
        if not text:
            continue
        try:
            if name == "secrets.yaml":
                return SecretsBundle.from_yaml(text), name
            if name == "controlplane.yaml":
                return SecretsBundle.from_machine_config(text), name
            return SecretsBundle.from_terraform_state(text), name
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise StepError("talos", f"{name} in {target.private_dir} cannot be imported: {e}") from e
    return None, ""


def where_secrets_go(private_dir: str) -> str:
    """What to put where, for a refusal (docs/ARCHITECTURE.md, "Existing cluster identity")."""
    return (f"put the existing cluster's secrets in {private_dir or 'the private state directory'} (mode 0600), one "
            "of: secrets.yaml (from `talosctl gen secrets`, or the one `talosctl gen config` wrote), "
            "controlplane.yaml (a control-plane machine config, as `talosctl gen secrets --from-controlplane-config` "
            "reads it), terraform.tfstate (a Terraform state holding talos_machine_secrets); then re-run 30-talos")


@dataclass(frozen=True)
class NodeFacts:
    name: str
    ip: str  # planned management IP
    reach_ip: str | None  # where it answered (None: nowhere)
    maintenance: bool = False
    docs: tuple[dict[str, Any], ...] = ()
    error: str = ""


@dataclass(frozen=True)
class TalosFacts:
    secrets: SecretsBundle
    secrets_saved: bool
    talosconfig_saved: bool
    nodes: dict[str, NodeFacts]
    bootstrapped: bool
    kubeconfig_saved: bool
    health_ok: bool = False
    health: tuple[dict[str, Any], ...] = field(default=())
    imported: str = ""  # the file the secrets were imported from ("" = none)
    foreign: tuple[str, ...] = ()  # nodes that run a configured Talos of another CA
    misaddressed: tuple[str, ...] = ()  # running VMs whose node answers nowhere falkit expects
    private_dir: str = ""  # where an existing cluster's secrets go (for the refusal)


def _running_vms(target: Any) -> dict[str, dict]:
    """VM name -> Proxmox status entry of the running QEMU VMs (empty when Proxmox cannot say)."""
    try:
        return {str(v.get("name")): v for v in target.pve.nodes(target.node).qemu.get() if v.get("status") == "running"}
    except Exception:  # noqa: BLE001 - only a hint for the addressing message
        return {}


def observe_talos(target: Any, spec: LabSpec) -> TalosFacts:
    text = target.read_private(SECRETS_FILE)
    imported = ""
    if text:
        bundle = SecretsBundle.from_yaml(text)
    else:
        found, imported = import_secrets(target)
        bundle = found if found is not None else new_secrets()
    saved_tc = target.read_private("talosconfig")
    ctx = contextlib.nullcontext(target.talos) if saved_tc and text else target.talos.using(talosconfig(spec, bundle))
    with ctx as talos:
        return _observe(target, spec, talos, bundle, bool(text), saved_tc is not None and bool(text), imported)


def _observe(target: Any, spec: LabSpec, talos: Any, bundle: SecretsBundle, saved: bool, tc_saved: bool,
             imported: str) -> TalosFacts:
    prev = {n.name: n.ip for n in (spec.previous.nodes if spec.previous else ())}
    nodes: dict[str, NodeFacts] = {}
    foreign: list[str] = []
    design = design_of(spec)
    for vm in design.vms:
        if vm.role not in ("control-plane", "worker"):
            continue
        facts = NodeFacts(vm.name, vm.ip, None, error="no answer")
        for ip in dict.fromkeys([vm.ip, prev.get(vm.name)]):
            if not ip:
                continue
            try:
                ver = talos.version(ip)
            except ForeignCAError as e:
                foreign.append(f"{vm.name} ({ip})")
                facts = NodeFacts(vm.name, vm.ip, None, error=f"{ip}: {e.message}")
                break
            except BackendError as e:
                facts = NodeFacts(vm.name, vm.ip, None, error=f"{ip}: {e.message}")
                continue
            maintenance = bool(ver.get("maintenance"))
            docs: tuple = ()
            if not maintenance:
                try:
                    docs = tuple(load_documents(talos.get_config(ip)))
                except BackendError as e:
                    facts = NodeFacts(vm.name, vm.ip, None, error=f"{ip}: {e.message}")
                    continue
            facts = NodeFacts(vm.name, vm.ip, ip, maintenance, docs)
            break
        nodes[vm.name] = facts
    running = _running_vms(target)
    macs = {v.name: v.nics[0].mac for v in design.vms if v.nics}
    misaddressed = tuple(f"{n.name} (planned {n.ip}, MAC {macs.get(n.name) or '?'})" for n in nodes.values()
                         if n.reach_ip is None and n.name in running
                         and any(w in n.error for w in ("refused", "no route", "i/o timeout", "did not finish")))
    cp = nodes.get(design.control_plane.name)
    boot = False
    h: dict[str, Any] = {"ok": False, "checks": [{"name": "talos health", "ok": False, "message": "no control plane"}]}
    if cp is not None and cp.reach_ip and not cp.maintenance:
        # bootstrapped = etcd runs on the control plane (`talosctl service etcd`), not a health check's name
        try:
            boot = talos.etcd_running(cp.reach_ip)
        except BackendError:
            boot = False
        if boot:
            h = talos.health(cp.reach_ip, 1.0)
    return TalosFacts(bundle, saved, tc_saved, nodes, boot, target.read_private("kubeconfig") is not None,
                      bool(h.get("ok")), tuple(h.get("checks") or ()), imported, tuple(foreign), misaddressed,
                      str(getattr(target, "private_dir", "") or ""))


def plan_talos(spec: LabSpec, facts: TalosFacts, options: StepOptions) -> Plan:
    if facts.foreign:
        raise StepError("talos", f"{', '.join(facts.foreign)} run(s) a Talos cluster whose CA is not the one falkit "
                                 "holds (the node refuses its talosconfig): falkit will not generate new secrets for a "
                                 f"cluster that already exists; {where_secrets_go(facts.private_dir)}")
    if not facts.secrets_saved and not facts.imported and spec.previous is not None and spec.previous.nodes:
        raise StepError("talos", "the lab has an existing Talos cluster (spec.previous) but no secrets of it: falkit "
                                 "will not generate new secrets for a cluster that already exists; "
                                 f"{where_secrets_go(facts.private_dir)}")
    if facts.misaddressed:
        raise StepError("talos", f"{', '.join(facts.misaddressed)}: the VM runs but its Talos node does not answer at "
                                 "its planned IP. A Talos ISO VM takes its address by DHCP in maintenance mode: "
                                 "reserve each planned IP for its VM's MAC on the DHCP server (as listed; every "
                                 "node's MAC is in the 20-vms plan), restart the VM, and re-run 30-talos")
    schematic = str(options.extra.get("talos_schematic") or VANILLA_SCHEMATIC)
    configs = render(spec, facts.secrets, schematic)
    changes: list[Change] = []
    noops: list[Noop] = []
    notes: list[str] = []
    if not facts.secrets_saved:
        reason = (f"the existing cluster's secrets, imported from {facts.imported} (private state dir, 0600)"
                  if facts.imported else "cluster secrets, created once (private state dir, 0600)")
        changes.append(Change("create", "talos-secrets", SECRETS_FILE, reason=reason,
                              data=TalosSecrets(Sealed(facts.secrets.to_yaml()), SECRETS_FILE)))
    design = design_of(spec)
    if not facts.talosconfig_saved or not facts.secrets_saved:
        changes.append(Change("create", "talosconfig", "talosconfig", reason="talosctl client config (private state dir, 0600)",
                              data=TalosClientConfig(Sealed(facts.secrets.to_yaml()), spec.cluster.name,
                                                     tuple(v.ip for v in design.vms if v.role == "control-plane"),
                                                     tuple(v.ip for v in design.vms if v.role in ("control-plane", "worker")))))
    cp_name = design.control_plane.name
    for name, cfg in configs.items():
        node = facts.nodes.get(name)
        if node is None or node.reach_ip is None:
            notes.append(f"{name}: not reachable ({node.error if node else 'not observed'}); is the VM running (20-vms)?")
            continue
        if node.docs and config_digest(list(node.docs)) == cfg.digest:
            noops.append(Noop("talos-config", name, f"runs the planned config ({cfg.digest})"))
            continue
        diff = summary_diff(list(node.docs), list(cfg.docs)) if node.docs else ["maintenance mode: install"]
        changes.append(Change("update" if node.docs else "create", "talos-config", name, "",
                              config_digest(list(node.docs)) if node.docs else "maintenance", cfg.digest,
                              disruptive=not node.maintenance,
                              reason="; ".join(diff) or "secrets/cluster settings differ",
                              # shown as a YAML diff, secrets redacted (falkit.plan.diff.Change.yaml_diff)
                              data=TalosApplyConfig(node.reach_ip, node.maintenance, Sealed(cfg.text),
                                                    tuple(node.docs) or None, tuple(cfg.docs))))
    if not facts.bootstrapped:
        cp = facts.nodes.get(cp_name)
        changes.append(Change("action", "etcd", cp_name, "bootstrap", reason="once per cluster",
                              data=TalosBootstrap(cp.ip if cp else None)))
    if not facts.kubeconfig_saved:
        changes.append(Change("action", "kubeconfig", "kubeconfig", "fetch", reason="admin kubeconfig into the private state dir",
                              data=TalosKubeconfig(facts.nodes[cp_name].ip if cp_name in facts.nodes else None)))
    if changes:
        changes.append(Change("action", "cluster", spec.cluster.name, "wait", reason="Kubernetes API and talos health",
                              data=TalosHealth(facts.nodes[cp_name].ip if cp_name in facts.nodes else None,
                                               HEALTH_PROBE_S)))
    if tuple(int(x) for x in spec.versions.talos.split(".")[:2]) >= (1, 12):
        notes.append("Talos 1.12+: the schematic of the ISO and installer must carry the kernel argument net.ifnames=0 "
                     "(eth0/eth1 names)")
    return Plan("talos", tuple(changes), tuple(noops), tuple(notes))


@executes(TalosSecrets)
def _save_secrets(c: Change, ctx: Apply) -> None:
    ctx.target.write_private(c.data.file, c.data.bundle.value)
    ctx.progress.log("secrets bundle saved (private, 0600)")


@executes(TalosClientConfig)
def _write_talosconfig(c: Change, ctx: Apply) -> None:
    d: TalosClientConfig = c.data
    bundle = SecretsBundle.from_yaml(d.bundle.value)
    ctx.target.write_private("talosconfig", client_config(bundle, d.context, list(d.endpoints), list(d.nodes)))


@executes(TalosApplyConfig)
def _apply_config(c: Change, ctx: Apply) -> None:
    d: TalosApplyConfig = c.data
    bar = ctx.progress.task(f"apply-config {c.name}", 1)
    res = ctx.target.talos.apply_config(d.ip, d.config.value, d.insecure)
    bar(1, str(res.get("message", "applied")))


@executes(TalosBootstrap)
def _bootstrap(c: Change, ctx: Apply) -> None:
    ip, talos = c.data.ip, ctx.target.talos
    bar = ctx.progress.task(f"bootstrap {c.name}", 1)
    wait_for(lambda: talos.version(ip), lambda v: not v.get("maintenance"), ctx.timeout, f"{c.name} up after install", bar)
    res = talos.bootstrap(ip)  # AlreadyExists: bootstrapped already
    bar(1, "bootstrapped already" if res.get("already") else "bootstrapped")


@executes(TalosKubeconfig)
def _fetch_kubeconfig(c: Change, ctx: Apply) -> None:
    ip, talos = c.data.ip, ctx.target.talos
    bar = ctx.progress.task("kubeconfig", 1)
    text = wait_for(lambda: talos.kubeconfig(ip), bool, ctx.timeout, "kubeconfig", bar, describe=lambda _t: "fetched")
    ctx.target.write_private("kubeconfig", text)


@executes(TalosHealth)
def _wait_health(c: Change, ctx: Apply) -> None:
    ip, target = c.data.ip, ctx.target
    bar = ctx.progress.task(f"health of {c.name}", 1)
    probe = min(c.data.probe_s, float(ctx.timeout))
    wait_for(lambda: target.talos.health(ip, probe), lambda h: _healthy(target, h), ctx.timeout, "talos health", bar,
             describe=_health_text)


@register("talos")
class TalosStep:
    title = "Talos machine configs, bootstrap and kubeconfig"
    options = {"talos_schematic": (str, "")}  # installer image schematic; "" = vanilla

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> TalosFacts:
        return observe_talos(target, spec)

    def plan(self, spec: LabSpec, observed: TalosFacts, options: StepOptions) -> Plan:
        return plan_talos(spec, observed, options)

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        try:
            execute(target, plan.changes, progress, options.wait_timeout_s, step="talos")
        except (BackendError, WaitTimeoutError) as e:
            last = getattr(e, "last", None)
            detail = f" (last: {_health_text(last) if isinstance(last, dict) else last})" if last is not None else ""
            raise StepError("talos", f"{e}{detail}") from e

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
        facts = observe_talos(target, spec)
        configs = render(spec, facts.secrets, str(options.extra.get("talos_schematic") or VANILLA_SCHEMATIC))
        out = []
        for name, cfg in configs.items():
            n = facts.nodes[name]
            digest = config_digest(list(n.docs)) if n.docs else ("maintenance" if n.reach_ip else "unreachable")
            out.append(Check("runs the planned config", name, cfg.digest, digest, digest == cfg.digest, "re-run 30-talos"))
            if cfg.role == "worker" and n.reach_ip and n.docs:
                mods = _safe(lambda ip=n.reach_ip: target.talos.read(ip, "/proc/modules"))
                have = sorted(line.split()[0] for line in mods.splitlines() if line.strip())
                want = [module_name(m) for m in spec.talos.kernel_modules]
                out.append(Check("kernel modules loaded", name, ", ".join(want), ", ".join(have) or "(none)",
                                 all(m in have for m in want), "check machine.kernel.modules"))
                mem = _safe(lambda ip=n.reach_ip: target.talos.read(ip, "/proc/meminfo"))
                pages = next((line.split()[1] for line in mem.splitlines() if line.startswith("HugePages_Total")), "0")
                out.append(Check("2 MiB hugepages", name, str(spec.mayastor.hugepages_2mi), pages,
                                 pages == str(spec.mayastor.hugepages_2mi), "check vm.nr_hugepages"))
        h = {"ok": facts.health_ok, "checks": list(facts.health)}
        pending = not facts.health_ok and _healthy(target, h)
        out.append(Check("talos health", spec.cluster.name, "ok (nodes may wait for the CNI)",
                         "ok but the nodes wait for a CNI (40-cilium installs Cilium)" if pending else _health_text(h),
                         facts.health_ok or pending, "talosctl health; see the failing checks"))
        return out


def _safe(fn: Any) -> str:
    try:
        return fn()
    except BackendError as e:
        return f"error: {e.message}"


CNI_NOT_READY = ("NetworkPluginNotReady", "cni plugin not initialized")


def cni_pending(health: dict, nodes: list[dict]) -> bool:
    """Pure: health fails only because the nodes wait for a CNI — every failing check is a node
    readiness check, and every NotReady Node's Ready condition names the missing network plugin."""
    bad = [c for c in health.get("checks") or [] if not c.get("ok")]
    if health.get("ok") or not bad or not nodes:
        return False
    if not all("ready" in str(c.get("name", "")).lower() or "report ready" in str(c.get("message", "")) for c in bad):
        return False
    for n in nodes:
        cond = next((c for c in (n.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
        if cond.get("status") != "True" and not any(m in str(cond.get("message", "")) for m in CNI_NOT_READY):
            return False
    return not any("not registered" in str(c.get("message", "")) for c in bad)


def _healthy(target: Any, h: dict) -> bool:
    if h.get("ok"):
        return True
    try:
        return cni_pending(h, klist(target.kube(), "v1", "Node"))
    except Exception:  # noqa: BLE001 - no Kubernetes API yet: not healthy
        return False


def _health_text(h: dict) -> str:
    bad = [f"{c.get('name')}: {c.get('message') or 'failed'}" for c in h.get("checks") or [] if not c.get("ok")]
    return "ok" if h.get("ok") else "; ".join(bad) or "not ok"
