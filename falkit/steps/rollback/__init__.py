"""Step 80-rollback: the seed's rollback plan, made executable — ten steps, each planned and shown
before it is applied, then a check that the lab is back in its before-state.

=======================  =====================================================================
step                     plan (pure, from observed state)
=======================  =====================================================================
``rollback-metallb``     the ``metallb`` Helm release (``metallb-system``, ``spec.versions.metallb``),
                         ``IPAddressPool default-pool`` = ``spec.previous.metallb_pool``
                         (10.30.0.65-10.30.0.100), ``L2Advertisement default``, and per service
                         of ``spec.services`` with an ``old_ip``: annotation
                         ``metallb.universe.tf/loadBalancerIPs: <old_ip>``, Cilium's LB annotations
                         (``lbipam.cilium.io/ips``, ``io.cilium/lb-ipam-ips``) removed
``rollback-cilium-lb``   delete the ``CiliumLoadBalancerIPPool`` of ``spec.cilium.lb_pool`` (or any
                         labelled managed-by falkit) and every ``CiliumL2AnnouncementPolicy`` (the
                         before-state had none). Apply first waits until MetalLB holds every old
                         IP; otherwise nothing is deleted (StepError)
``rollback-longhorn``    rename ``spec.gitops.longhorn_files`` ``*.disabled`` back in the GitOps
                         checkout (the seed: ``mv longhorn-app.yaml.disabled longhorn-app.yaml``);
                         falkit does not commit or push (ArgoCD syncs what the operator pushes)
``rollback-volumes``     each Mayastor copy (``falkit.io/migrated-from: <old>``, written by the
                         volumes step) still mounted by a workload: scale it to 0, checksum both
                         claims, copy the Mayastor copy back onto the original claim when they
                         differ (data written since the migration) and compare again, point the
                         workload back at the original claim, scale it up. The original claim is
                         kept by the volumes step by default; when it is gone it is re-created on
                         ``previous.longhorn_storage_class``. **The Mayastor copy is never deleted**
                         unless ``delete_migrated_volumes=True`` (a destructive change: it also
                         needs ``allow_destructive``)
``rollback-workers``     workers the before-state did not have (not in ``spec.previous.nodes``):
                         cordon and drain their Nodes (DaemonSet pods stay), power the VMs off
                         (``status/shutdown``, then ``status/stop`` after the timeout), delete the
                         Node objects; destroy the VMs (and their disks) only with
                         ``destroy_extra_workers=True`` (destructive: also ``allow_destructive``)
``rollback-mayastor``    falkit's own claims the before-state did not have (70-validation's test claim,
                         50-mayastor's fio claims) deleted; the Mayastor StorageClass and DiskPools
                         once no claim that stays uses them (:mod:`.mayastor`)
``rollback-talos``       talos-cp-01 and talos-worker-01 back on 10.30.0.x: old address added, talosconfig
                         endpoints switched, new address removed, kubeconfig fetched again, Nodes at
                         their old InternalIPs; the storage NIC and the Mayastor node label dropped
                         from the config (:mod:`.talos`, with the upstream sources of that order)
``rollback-vms``         the VMs the before-state had: their old MACs, bridges, ``balloon``, no
                         ``net1`` (:mod:`.pve`)
``rollback-containers``  containers the migration added stopped; destroyed only with
                         ``destroy_new_containers`` (destructive)
``rollback-network``     vmbr0 back to its address and gateway, vmbr1 deleted when nothing uses it
``rollback-terraform``   the Terraform files falkit edited back to the commit before its edits
``rollback-gitops``      every other file of the GitOps checkout that still differs from the
                         before-state's tree back to its content before falkit's first commit (or
                         removed: ``mayastor-app.yaml``, whose Application is then pruned), committed
                         and delivered to the branch Argo CD syncs (:mod:`.gitops`)
``rollback``             no changes; its checks compare the lab with its before-state
=======================  =====================================================================

**The before-state check** (step ``rollback``): with a recorded before-state
(:func:`record_before_state`, kept in the target's private dir as ``before-state.json``) every
compared field (:mod:`.state`: bridges, VMs, containers, node IPs and labels, service IPs, MetalLB,
storage classes, claims, DiskPools, Cilium LB objects, Argo CD Applications, Helm releases, the
GitOps tree, workload claims, data checksums) is compared, before and after, as one table
(:func:`comparison`, archived as ``80-rollback.before-after.json`` in the run directory): every
row must be equal or kept by a stated option; and every service IP must lie on the host's
management network (vmbr0), which a 10.30.0.x IP on a 10.10.0.0/24 host does not. Without one, the spec is the reference: every service
with an ``old_ip`` has it again, every migrated workload mounts its original claim, and that claim's
checksum equals the one the volumes step recorded on the copy (``falkit.io/checksum``) when the
copy was not written since.
"""

from __future__ import annotations

from typing import Any

from ...plan.diff import Plan
from ..base import Check, Progress, StepOptions, register
from ..volumes import checkout_path, observe_gitops
from ._common import _ann, _checksum, _key, _md, _wait  # noqa: F401  (importable from here as before the split)
from .gitops import apply_gitops_back, observe_gitops_back, plan_gitops_back
from .lb import (
    CILIUM_IPS,
    L2ADV_NAME,
    METALLB_API,
    METALLB_CHART,
    METALLB_IPS,
    METALLB_NS,
    METALLB_RELEASE,
    POOL_NAME,
    LbFacts,
    _cilium_pool_ours,
    _git_reversals,  # noqa: F401
    _metallb_patch,  # noqa: F401
    apply_cilium_lb,
    apply_metallb,
    metallb_objects,
    observe_lb,
    plan_cilium_lb,
    plan_metallb,
    service_ip_checks,
)
from .longhorn import apply_longhorn, plan_longhorn
from .mayastor import apply_mayastor_back, observe_mayastor, plan_mayastor_back
from .plex import RollbackPlex  # noqa: F401  (rollback-plex, falkit/steps/rollback/plex.py)
from .pve import (
    apply_containers_back,
    apply_network_back,
    apply_vms_back,
    observe_pve,
    plan_containers_back,
    plan_network_back,
    plan_vms_back,
)
from .state import (
    BEFORE_FILE,
    before_state_checks,
    comparison,
    lab_state,
    last_comparison,
    record_before_state,
    recorded_before,
)
from .talos import apply_reip, observe_reip, plan_reip, reip_checks
from .terraform import RollbackTerraform  # noqa: F401  (rollback-terraform)
from .volumes import (
    ROLLED_BACK,
    VolFacts,
    apply_volumes_back,
    before_state_checks_volumes,
    move_back,
    observe_volumes,
    plan_volumes_back,
)
from .workers import (
    SHUTDOWN_TIMEOUT_S,
    WorkerFacts,
    _drainable,  # noqa: F401
    apply_workers,
    observe_workers,
    plan_workers,
)

__all__ = [
    # lb
    "CILIUM_IPS", "L2ADV_NAME", "METALLB_API", "METALLB_CHART", "METALLB_IPS", "METALLB_NS", "METALLB_RELEASE",
    "POOL_NAME", "LbFacts", "apply_cilium_lb", "apply_metallb", "metallb_objects", "observe_lb", "plan_cilium_lb",
    "plan_metallb", "service_ip_checks",
    # longhorn
    "apply_longhorn", "plan_longhorn",
    # volumes
    "ROLLED_BACK", "VolFacts", "apply_volumes_back", "before_state_checks_volumes", "move_back", "observe_volumes",
    "plan_volumes_back",
    # workers
    "SHUTDOWN_TIMEOUT_S", "WorkerFacts", "apply_workers", "observe_workers", "plan_workers",
    # state
    "BEFORE_FILE", "before_state_checks", "comparison", "lab_state", "last_comparison", "record_before_state", "recorded_before",
    # the steps (below)
    "RollbackCiliumLb", "RollbackContainers", "RollbackGitops", "RollbackLonghorn", "RollbackMayastor", "RollbackMetallb", "RollbackNetwork",
    "RollbackTalos", "RollbackVerify", "RollbackVms", "RollbackVolumes", "RollbackWorkers",
]

# =============================================================================================
# The steps


class _Base:
    options: dict[str, tuple[type, Any]] = {}

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        self._apply(target, plan, options, progress)


@register("rollback-metallb")
class RollbackMetallb(_Base):
    title = "Rollback 1/10: MetalLB back (release, pool, L2Advertisement, service annotations)"

    def observe(self, target, spec, options):
        return observe_lb(target, spec)

    def plan(self, spec, observed, options):
        return plan_metallb(spec, observed)

    _apply = staticmethod(apply_metallb)

    def checks(self, target, spec, options):
        return service_ip_checks(spec, observe_lb(target, spec).services)


@register("rollback-cilium-lb")
class RollbackCiliumLb(_Base):
    title = "Rollback 2/10: Cilium LB pool and L2 policy removed (after MetalLB holds every IP)"

    def observe(self, target, spec, options):
        return observe_lb(target, spec)

    def plan(self, spec, observed, options):
        return plan_cilium_lb(spec, observed)

    _apply = staticmethod(apply_cilium_lb)

    def checks(self, target, spec, options):
        f = observe_lb(target, spec)
        left = [p for p in f.cilium_pools if _cilium_pool_ours(spec, p)] + list(f.l2_policies)
        return [Check("Cilium LB objects removed", "cluster", "no falkit pool, no L2 policy",
                      ", ".join(_md(p)["name"] for p in left) or "none", not left, "re-run rollback-cilium-lb"),
                *service_ip_checks(spec, f.services)]


@register("rollback-longhorn")
class RollbackLonghorn(_Base):
    title = "Rollback 3/10: Longhorn's manifests re-enabled in the GitOps checkout"
    options = {"gitops_checkout": (str, "")}

    def observe(self, target, spec, options):
        return observe_gitops(spec, options, target)

    def plan(self, spec, observed, options):
        return plan_longhorn(spec, observed)

    _apply = staticmethod(apply_longhorn)

    def checks(self, target, spec, options):
        g = observe_gitops(spec, options, target)
        if g is None:
            return []
        path = checkout_path(spec.gitops, options, target)
        return [Check("Longhorn manifest enabled", f, f"{path}/{spec.gitops.platform_path}/{f}", state, state == "enabled",
                      f"mv {f}.disabled {f}") for f, state in sorted(g.files.items()) if state != "absent"]


@register("rollback-volumes")
class RollbackVolumes(_Base):
    title = "Rollback 4/10: workloads back on their original volumes (checksummed)"
    options = {"delete_migrated_volumes": (bool, False)}

    def observe(self, target, spec, options):
        return observe_volumes(target, spec)

    def plan(self, spec, observed, options):
        return plan_volumes_back(spec, observed, options)

    _apply = staticmethod(apply_volumes_back)

    def checks(self, target, spec, options):
        return before_state_checks_volumes(target, spec)


@register("rollback-workers")
class RollbackWorkers(_Base):
    title = "Rollback 6/10: back to a single worker (extra workers powered off)"
    options = {"destroy_extra_workers": (bool, False)}

    def observe(self, target, spec, options):
        return observe_workers(target, spec)

    def plan(self, spec, observed, options):
        return plan_workers(spec, observed, options)

    _apply = staticmethod(apply_workers)

    def checks(self, target, spec, options):
        if spec.previous is None:  # a new build: no earlier cluster to return to, no worker is "extra"
            return []
        f = observe_workers(target, spec)
        keep = {n.vmid for n in spec.previous.nodes}
        out = []
        for w in spec.cluster.workers:
            if w.vmid in keep:
                continue
            vm = f.vms.get(w.vmid)
            state = "destroyed" if vm is None else vm["status"]
            out.append(Check("extra worker off", w.name, "stopped (or destroyed), no Node", state +
                             (", Node present" if w.name in f.nodes else ""), state != "running" and w.name not in f.nodes,
                             "re-run rollback-workers"))
        return out


@register("rollback-mayastor")
class RollbackMayastor(_Base):
    title = "Rollback 5/10: Mayastor's test claims, StorageClass and DiskPools removed"

    def observe(self, target, spec, options):
        return observe_mayastor(target, spec)

    def plan(self, spec, observed, options):
        return plan_mayastor_back(spec, observed, options)

    _apply = staticmethod(apply_mayastor_back)

    def checks(self, target, spec, options):
        plan = plan_mayastor_back(spec, observe_mayastor(target, spec), options)
        return [Check("Mayastor leftovers removed", c.name, "absent", "present", False, "re-run rollback-mayastor")
                for c in plan.changes]


@register("rollback-talos")
class RollbackTalos(_Base):
    title = "Rollback 7/10: control plane and worker-01 back on their old addresses (Talos re-IP, endpoints)"

    def observe(self, target, spec, options):
        return observe_reip(target, spec)

    def plan(self, spec, observed, options):
        return plan_reip(spec, observed, options)

    _apply = staticmethod(apply_reip)

    def checks(self, target, spec, options):
        return reip_checks(target, spec) if options.apply else []


@register("rollback-vms")
class RollbackVms(_Base):
    title = "Rollback 8/10: the VMs' MACs, bridges and memory settings as before"

    def observe(self, target, spec, options):
        return observe_pve(target, spec)

    def plan(self, spec, observed, options):
        return plan_vms_back(spec, observed, options)

    _apply = staticmethod(apply_vms_back)

    def checks(self, target, spec, options):
        plan = plan_vms_back(spec, observe_pve(target, spec), options)
        return [Check("VM config as before", f"{c.name} {c.field}", str(c.new), str(c.old), False, "re-run rollback-vms")
                for c in plan.changes if c.op == "update"]


@register("rollback-containers")
class RollbackContainers(_Base):
    title = "Rollback 9/10: containers the migration added stopped (destroyed only with destroy_new_containers)"
    options = {"destroy_new_containers": (bool, False)}

    def observe(self, target, spec, options):
        return observe_pve(target, spec)

    def plan(self, spec, observed, options):
        return plan_containers_back(spec, observed, options)

    _apply = staticmethod(apply_containers_back)

    def checks(self, target, spec, options):
        f = observe_pve(target, spec)
        plan = plan_containers_back(spec, f, options)
        return [Check("new container stopped", c.name, "stopped" + (" / destroyed" if c.op == "delete" else ""),
                      f.cts.get(c.data.vmid, {}).get("status", "destroyed"), False, "re-run rollback-containers")
                for c in plan.changes]


@register("rollback-network")
class RollbackNetwork(_Base):
    title = "Rollback 10/10: the bridges as before (vmbr0's old address and gateway, vmbr1 removed)"

    def observe(self, target, spec, options):
        return observe_pve(target, spec)

    def plan(self, spec, observed, options):
        return plan_network_back(spec, observed, options)

    _apply = staticmethod(apply_network_back)

    def checks(self, target, spec, options):
        plan = plan_network_back(spec, observe_pve(target, spec), options)
        return [Check("bridge as before", f"{c.name}", str(c.new or "absent"), str(c.old or "present"), False,
                      "re-run rollback-network") for c in plan.changes if c.kind == "bridge"]


@register("rollback-gitops")
class RollbackGitops(_Base):
    title = "Rollback: the GitOps tree as before the migration (committed, delivered to Argo CD's branch)"
    options = {"gitops_checkout": (str, "")}

    def observe(self, target, spec, options):
        return observe_gitops_back(target, spec, options)

    def plan(self, spec, observed, options):
        return plan_gitops_back(spec, observed, options)

    _apply = staticmethod(apply_gitops_back)

    def checks(self, target, spec, options):
        plan = plan_gitops_back(spec, observe_gitops_back(target, spec, options), options)
        return [Check("GitOps file as before", c.name, "as before the migration", "differs", False, "re-run rollback-gitops")
                for c in plan.changes if c.kind == "git-file"]


@register("rollback")
class RollbackVerify(_Base):
    """Checks only. The option ``rollback`` (default False) guards the whole 80 notebook: ``falkit run``
    runs every notebook with the same ``apply``, and a migration run must not roll itself back — the
    notebook applies only when ``apply and rollback``. In a dry run the lab is not expected to be in its
    before-state, so these checks return nothing then."""

    title = "Rollback: the lab matches its before-state"
    options = {"rollback": (bool, False)}

    def observe(self, target, spec, options):
        return None

    def plan(self, spec, observed, options):
        return Plan("rollback", notes=("checks only: every compared field with the before-state (a before/after table), "
                                       "and the service IPs on the host's management network",))

    def _apply(self, target, plan, options, progress):
        return None

    def checks(self, target, spec, options):
        return before_state_checks(target, spec, options) if options.apply else []
