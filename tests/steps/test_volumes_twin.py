"""volumes against the running twin lab (kube emulator + lab controllers over HTTP, a real pve
process): the "before" lab's Longhorn claims of the media apps are copied, checksummed by the twin's
Job controller, the Deployments scaled down, repointed to the new claims and scaled back up; a
re-run plans nothing; a corrupted copy (the twin's ``corrupt_copy`` fault, injected with
``POST /lab/faults``) is detected, stops the step with StepError ("checksum mismatch", what to do)
and leaves the workload on its OLD claim, scaled back up; ``DELETE /lab/faults`` clears a
corrupt_copy held in the lab state too, after which the copy verifies; Longhorn's manifests
are renamed only after every volume is verified.

The twin's Mayastor binds volumes only on migrated workers (30-talos has to run first), so these
tests copy to a target StorageClass the twin's Longhorn provisions; the mechanics under test —
scale, copy, checksum, compare, repoint, GitOps — are the same whatever the target class is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from helpers import patched  # noqa: E402

from falkit.clients.kube import kcreate, kget, klist  # noqa: E402
from falkit.model.errors import StepError  # noqa: E402
from falkit.model.spec import spec_from_data  # noqa: E402
from falkit.model.yamlsrc import parse_yaml  # noqa: E402
from falkit.steps.base import StepOptions  # noqa: E402
from falkit.steps.volumes import CHECKSUM, MIGRATED_TO, ORIGINAL_REPLICAS, VolumesStep  # noqa: E402

TARGET_CLASS = "migration-target"


@dataclass
class KubeTarget:
    """A target with a Kubernetes API and the spec's GitOps section, like falkit.clients.target.Target:
    the spec itself is kept under another name (for the test's plan calls), so an apply that
    reads ``target.lab_spec`` fails here as it does on a real target."""

    lab_spec: Any
    api: Any
    kind: str = "twin"

    @property
    def gitops(self):
        return self.lab_spec.gitops

    def kube(self):
        return self.api


class Log:
    def __init__(self):
        self.lines, self.bars = [], {}

    def task(self, name, total=None):
        self.bars[name] = []
        return lambda v, m="": self.bars[name].append((v, m))

    def log(self, m):
        self.lines.append(m)


@pytest.fixture
def lab(lab_before):
    return lab_before


@pytest.fixture
def setup(lab, tmp_path):
    d, pos = parse_yaml(yaml.safe_dump(patched({"mayastor.storage_class": TARGET_CLASS})), "lab.yaml")
    spec = spec_from_data(d, pos)
    kcreate(lab.api, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": TARGET_CLASS},
                      "provisioner": "driver.longhorn.io", "parameters": {"numberOfReplicas": "1"}})
    from falkit.twin.gitops_fixture import make_fixture_repo, make_remote

    checkout = make_fixture_repo(tmp_path / "gitops", spec)
    make_remote(checkout, tmp_path / "gitops-remote.git")  # falkit pushes and merges (spec.gitops)
    platform = checkout / spec.gitops.platform_path
    lab.wait(lambda: all((p.get("status") or {}).get("phase") == "Bound"
                         for p in klist(lab.api, "v1", "PersistentVolumeClaim", "media"))
             and klist(lab.api, "v1", "PersistentVolumeClaim", "media"), what="media claims bound")
    return KubeTarget(spec, lab.api), StepOptions(apply=True, wait_timeout_s=20, extra={"gitops_checkout": str(checkout)}), platform


def claim_of(api, name):
    d = kget(api, "apps/v1", "Deployment", name, "media")
    return [v["persistentVolumeClaim"]["claimName"] for v in d["spec"]["template"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v][0]


def test_migration_on_the_twin(lab, setup):
    target, opts, platform = setup
    step = VolumesStep()
    plan = step.plan(target.lab_spec, step.observe(target, target.lab_spec, opts), opts)
    vols = [c.name for c in plan.changes if c.kind == "volume"]
    assert vols and all(n.startswith("media/") for n in vols)
    before = {c.data.name: claim_of(lab.api, w[1]) for c in plan.changes if c.kind == "volume" for w in c.data.workloads}
    step.apply(target, plan, opts, Log())
    for c in plan.changes:
        if c.kind != "volume":
            continue
        ns, old = c.data.namespace, c.data.name
        new = kget(lab.api, "v1", "PersistentVolumeClaim", old + "-mayastor", ns)
        src = kget(lab.api, "v1", "PersistentVolumeClaim", old, ns)
        assert new["metadata"]["annotations"][CHECKSUM]
        assert src["metadata"]["annotations"][MIGRATED_TO] == old + "-mayastor"
        for kind, name in c.data.workloads:
            assert claim_of(lab.api, name) == old + "-mayastor"
            d = kget(lab.api, "apps/v1", kind, name, ns)
            assert ORIGINAL_REPLICAS not in (d["metadata"].get("annotations") or {})
            assert d["status"].get("readyReplicas") == d["spec"]["replicas"]
        # the twin's data: the copy carries the source's checksum
        pv_old, pv_new = src["spec"]["volumeName"], new["spec"]["volumeName"]
        assert lab.ctx.volumes[pv_old].checksum == lab.ctx.volumes[pv_new].checksum
    assert before  # the workloads did mount the old claims
    names = {p.name for p in platform.iterdir()}
    assert {f + ".disabled" for f in target.lab_spec.gitops.longhorn_files} <= names
    assert not set(target.lab_spec.gitops.longhorn_files) & names
    again = step.plan(target.lab_spec, step.observe(target, target.lab_spec, opts), opts)
    assert again.empty, str(again)
    assert all(c.ok for c in step.checks(target, target.lab_spec, opts))


def test_corrupted_copy_stops_the_step(lab, setup):
    target, opts, platform = setup
    # the fault an operator injects (POST /lab/faults); "unknown fault kind" before issue 15 item 4
    assert lab.lab.fault("corrupt_copy", claim="*") == {"kind": "corrupt_copy", "claim": "*"}
    assert lab.lab.faults()["corrupt_copy"] == ["*"]
    step = VolumesStep()
    plan = step.plan(target.lab_spec, step.observe(target, target.lab_spec, opts), opts)
    first = next(c for c in plan.changes if c.kind == "volume" and c.data.workloads)
    kind, name = first.data.workloads[0]
    replicas = kget(lab.api, "apps/v1", kind, name, "media")["spec"]["replicas"]
    with pytest.raises(StepError, match="checksum mismatch"):
        step.apply(target, plan, opts, Log())
    assert claim_of(lab.api, name) == first.data.name  # still the OLD claim
    d = kget(lab.api, "apps/v1", kind, name, "media")
    assert d["spec"]["replicas"] == replicas
    assert ORIGINAL_REPLICAS not in (d["metadata"].get("annotations") or {})
    src = kget(lab.api, "v1", "PersistentVolumeClaim", first.data.name, "media")
    assert MIGRATED_TO not in (src["metadata"].get("annotations") or {})
    assert set(target.lab_spec.gitops.longhorn_files) <= {p.name for p in platform.iterdir()}  # Longhorn kept
    assert not all(c.ok for c in step.checks(target, target.lab_spec, opts))


def test_delete_faults_clears_corrupt_copy(lab, setup):
    target, opts, platform = setup
    lab.ctx.extra.setdefault("faults", {})["corrupt_copy"] = ["*"]  # lab state (older tests, snapshots)
    lab.lab.fault("corrupt_copy", claim="media/nothing")
    assert lab.lab.clear_faults() >= 2
    assert lab.lab.faults()["corrupt_copy"] == [] and "faults" not in lab.ctx.extra
    step = VolumesStep()
    plan = step.plan(target.lab_spec, step.observe(target, target.lab_spec, opts), opts)
    step.apply(target, plan, opts, Log())  # no checksum mismatch: every copy verifies
    assert all(c.ok for c in step.checks(target, target.lab_spec, opts))


def test_a_claim_made_on_longhorn_after_the_plan_keeps_longhorn(lab, setup):
    """apply reads no spec (issue 18): before renaming Longhorn's files it re-reads the claims and
    compares them with the plan; a Longhorn claim the plan did not know stops the rename."""
    target, opts, platform = setup
    step = VolumesStep()
    plan = step.plan(target.lab_spec, step.observe(target, target.lab_spec, opts), opts)
    assert any(c.kind == "gitops-file" for c in plan.changes)
    kcreate(lab.api, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                      "metadata": {"name": "late-claim", "namespace": "media"},
                      "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": TARGET_CLASS,
                               "resources": {"requests": {"storage": "1Gi"}}}})
    with pytest.raises(StepError, match="still on Longhorn: media/late-claim"):
        step.apply(target, plan, opts, Log())
    assert set(target.lab_spec.gitops.longhorn_files) <= {p.name for p in platform.iterdir()}  # Longhorn kept


def test_a_workload_something_keeps_scaling_up_is_not_moved(lab, setup):
    """Something that keeps scaling a workload up — here a controller of the test's own, as an HPA
    or an operator would — stops the volume move with a StepError naming the workload and what to
    do, and the workload stays on its old claim: either the wait sees it scaled back up more than
    RESCALES times (a late Argo CD sync is once, docs/FACTS.md "Argo CD"), or, when the pods went
    before it scaled up again, the check after the copy sees it ran while its claim was copied."""
    import threading

    from falkit.clients.kube import kpatch
    from falkit.steps.quiesce import RESCALES

    target, opts, platform = setup
    step = VolumesStep()
    plan = step.plan(target.lab_spec, step.observe(target, target.lab_spec, opts), opts)
    assert "media/radarr-config" in {c.name for c in plan.changes if c.kind == "volume"}
    stop = threading.Event()

    def keep_scaling_up() -> None:
        while not stop.wait(0.02):
            d = kget(lab.api, "apps/v1", "Deployment", "radarr", "media")
            if not d["spec"].get("replicas"):
                kpatch(lab.api, "apps/v1", "Deployment", "radarr", {"spec": {"replicas": 1}}, "media")

    t = threading.Thread(target=keep_scaling_up, daemon=True)
    t.start()
    log = Log()
    try:
        with pytest.raises(StepError) as e:
            step.apply(target, plan, opts, log)
    finally:
        stop.set()
        t.join()
    text = str(e.value)
    rescales = sum("radarr was scaled back up to 1" in m for m in log.lines)
    if "each time falkit scales it to 0" in text:
        assert f"Deployment media/radarr is scaled back up to 1 each time falkit scales it to 0 ({RESCALES + 1} times; " \
               "something scaled it)" in text and rescales == RESCALES, (text, log.lines)
    else:
        assert f"Deployment media/radarr was scaled up to 1 while media/radarr-config was copied (something scaled " \
               f"it), {RESCALES + 1} times: the copy may lack what it wrote; nothing was switched to the copy" in text, text
    assert "(an HPA, an operator, a sync policy falkit did not pause), stop it, then re-run the step" in text
    assert claim_of(lab.api, "radarr") == "radarr-config"  # still the OLD claim
    src = kget(lab.api, "v1", "PersistentVolumeClaim", "radarr-config", "media")
    assert MIGRATED_TO not in (src["metadata"].get("annotations") or {})


def test_a_workload_scaled_up_during_the_copy_is_copied_again(lab, setup):
    """A workload scaled up once after falkit's wait saw it down — while its claim is being copied
    (the test scales it up once the copy Job exists), as a sync decided before the pause can —
    ran during the copy: falkit says so, scales it down and copies again, and only that copy is
    switched to."""
    import threading

    from falkit.clients.kube import klist, kpatch

    target, opts, platform = setup
    step = VolumesStep()
    plan = step.plan(target.lab_spec, step.observe(target, target.lab_spec, opts), opts)
    stop = threading.Event()
    scaled = []

    def scale_up_during_the_copy() -> None:
        while not stop.wait(0.01):
            if any((j["metadata"].get("annotations") or {}).get("falkit.io/source-pvc") == "radarr-config"
                   for j in klist(lab.api, "batch/v1", "Job", "media")):
                kpatch(lab.api, "apps/v1", "Deployment", "radarr", {"spec": {"replicas": 1}}, "media")
                scaled.append(1)
                return

    t = threading.Thread(target=scale_up_during_the_copy, daemon=True)
    t.start()
    log = Log()
    try:
        step.apply(target, plan, opts, log)
    finally:
        stop.set()
        t.join()
    assert scaled
    assert [m for m in log.lines if "Deployment media/radarr was scaled up to 1 while media/radarr-config was copied "
            "(something scaled it: a sync that started before the pause): scaling it down and copying again" in m], log.lines
    assert claim_of(lab.api, "radarr") == "radarr-config-mayastor"
    d = kget(lab.api, "apps/v1", "Deployment", "radarr", "media")
    assert d["spec"]["replicas"] == 1 and ORIGINAL_REPLICAS not in (d["metadata"].get("annotations") or {})
