"""Typed change payloads (issue 18, "the plan is apply's only input"), as values.

Covers: every registered payload type (``falkit.plan.payloads.PAYLOADS``, after every step module is
loaded) survives ``Plan.to_json`` -> JSON text -> ``Plan.from_json`` equal to the original, nested
values and tuples included; a payload counts in ``Change`` equality (two changes that differ only in
what apply would do are different); an archived plan (``to_json(redact=True)``) carries the payloads
with a planted secret replaced, and a value that does not serialise (a sealed Talos config) is named,
not shown; ``falkit show-plan`` prints an archived plan (a plan JSON, a notebook's result.json) as
the notebook shows plans; every step whose changes carry typed payloads has an executor for each.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from falkit.plan.diff import Change, Plan, load_plans
from falkit.plan.payloads import (
    PAYLOADS,
    ArgoRepository,
    Blocked,
    DirectChange,
    GitChange,
    GitRepo,
    GitRestore,
    HelmRelease,
    HelmUninstall,
    KubeAnnotate,
    KubeApply,
    KubeCreate,
    KubeDelete,
    KubePatch,
    KubeReplace,
    RecordBeforeState,
    Sealed,
    SecretSource,
    TalosAddressConfig,
    TalosApplyConfig,
    TalosBootstrap,
    TalosClientConfig,
    TalosEndpoints,
    TalosHealth,
    TalosKubeconfig,
    TalosSecrets,
    WaitArgoCD,
    WaitNodeAddresses,
    WaitPruned,
    WaitServiceIPs,
)
from falkit.render.gitops import GitEdit, ObjectRef
from falkit.steps import executors, network, vms
from falkit.steps.benchmarks import BenchCreate, FioRun
from falkit.steps.mayastor import WaitDiskPools, WaitMayastor, WaitPvcBound, WriteTestVolume
from falkit.steps.plex import (
    PlexAnswers,
    PlexDeleteClaim,
    PlexLibraryClaim,
    PlexLibraryCopy,
    PlexRemoveWorkload,
    PlexStart,
)
from falkit.steps.registry import STEPS
from falkit.steps.rollback import pve as rollback_pve
from falkit.steps.rollback import workers as rollback_workers
from falkit.steps.rollback.plex import PlexBackCopy, PlexBackDestroy, PlexBackStop, PlexBackWorkload
from falkit.steps.rollback.volumes import VolumeMoveBack
from falkit.steps.truenas_plex import (
    NfsMountServer,
    PlexCreateCT,
    PlexCTConfig,
    PlexImagePull,
    PlexStartCT,
    PlexTemplateDownload,
    PveStorage,
    TrueNasCreateVM,
    TrueNasService,
    TrueNasShare,
    TrueNasStartVM,
)
from falkit.steps.volumes import VolumeMove

ROOT = Path(__file__).resolve().parents[1]
PLANTED = "planted-s3cret-9f8e7d6c5b4a"
REF = ObjectRef("v1", "Service", "traefik", "traefik")
EDIT = GitEdit("kubernetes/platform/traefik/service.yaml", "a: 1\n", "a: 2\n", rename_to=None, message="falkit: x")
REPO = GitRepo("/tmp/gitops", "kubernetes/platform", "falkit/migration", True, "origin", True, "main",
               ("longhorn-app.yaml", "longhorn-rbac-app.yaml"))

#: one example per payload type; the test below fails when a type is added without one
EXAMPLES = {
    "GitEdit": EDIT,
    "ObjectRef": REF,
    "GitRepo": REPO,
    "GitChange": GitChange(EDIT, "traefik", REF, {"metadata": {"annotations": {"x": None}}}, False, REPO, True),
    "DirectChange": DirectChange(REF, {"metadata": {"labels": {"a": "b"}}}, None),
    "HelmRelease": HelmRelease("kube-system", "cilium", "cilium/cilium", "1.18.4",
                               {"l2announcements": {"enabled": True}, "k8sClientRateLimit": {"qps": 50},
                                "tls": {"secret": PLANTED}, "list": [1, [2, 3]]}, {"old": True}),
    "HelmUninstall": HelmUninstall("metallb-system", "metallb"),
    "KubeApply": KubeApply({"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
                            "metadata": {"name": "lb-pool"}, "spec": {"blocks": [{"start": "10.10.0.50"}]}}),
    "KubeCreate": KubeCreate({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                              "metadata": {"name": "default-pool", "namespace": "metallb-system"}}),
    "KubeAnnotate": KubeAnnotate(REF, {"lbipam.cilium.io/ips": "10.10.0.80", "metallb.universe.tf/loadBalancerIPs": None}),
    "KubeDelete": KubeDelete(ObjectRef("metallb.io/v1beta1", "IPAddressPool", "metallb-system", "default-pool")),
    "WaitServiceIPs": WaitServiceIPs((("traefik/traefik", "10.10.0.80"), ("argocd/argocd-server", "pool")),
                                     ("10.10.0.50", "10.10.0.99"), True),
    "SecretSource": SecretSource("FALKIT_GIT_TOKEN", None),
    "ArgoRepository": ArgoRepository({"apiVersion": "v1", "kind": "Secret", "stringData": {"url": "https://x/y.git"}},
                                     SecretSource(None, "~/.gitops-token")),
    "GitRestore": GitRestore(REPO, "kubernetes/platform/mayastor-app.yaml", "kind: Application\n", None,
                             "falkit: rollback: GitOps tree back to 0123456789"),
    "WaitPruned": WaitPruned("mayastor", 60.0),
    "RecordBeforeState": RecordBeforeState("/tmp/gitops"),
    "WaitArgoCD": WaitArgoCD("argocd/argocd-server", ("platform", "traefik"), ("longhorn",)),
    "TalosSecrets": TalosSecrets(Sealed(f"secrets:\n  bootstraptoken: {PLANTED}\n")),
    "TalosClientConfig": TalosClientConfig(Sealed(f"secrets:\n  bootstraptoken: {PLANTED}\n"), "homelab",
                                           ("10.10.0.10",), ("10.10.0.10", "10.10.0.11")),
    "TalosApplyConfig": TalosApplyConfig("10.10.0.11", True, Sealed(f"machine:\n  token: {PLANTED}\n"), None,
                                         ({"version": "v1alpha1", "machine": {"token": PLANTED, "type": "worker"}},
                                          {"kind": "HostnameConfig", "hostname": "talos-worker-01"})),
    "TalosBootstrap": TalosBootstrap("10.10.0.10"),
    "TalosKubeconfig": TalosKubeconfig("10.10.0.10"),
    "TalosHealth": TalosHealth("10.10.0.10", 120.0),
    "TalosAddressConfig": TalosAddressConfig("10.10.0.11", Sealed(f"machine:\n  token: {PLANTED}\n"), "10.30.0.11",
                                             ({"machine": {"token": PLANTED, "certSANs": ["10.10.0.11"]}},),
                                             ({"machine": {"token": PLANTED, "certSANs": ["10.30.0.11"]}},)),
    "TalosEndpoints": TalosEndpoints("10.30.0.10", ("10.30.0.10", "10.30.0.11")),
    "WaitNodeAddresses": WaitNodeAddresses((("talos-cp-01", "10.30.0.10"), ("talos-worker-01", "10.30.0.11")),
                                           (("talos-cp-01", ()), ("talos-worker-01", ("openebs.io/engine",)))),
    "KubePatch": KubePatch(ObjectRef("v1", "Node", "", "talos-worker-01"),
                           {"metadata": {"labels": {"openebs.io/engine": "mayastor"}}}),
    "KubeReplace": KubeReplace({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "mayastor-3"},
                                "provisioner": "io.openebs.csi-mayastor", "parameters": {"repl": "3"}}),
    "Blocked": Blocked("hugepages: 0 MiB of 2 MiB pages", "set mayastor.hugepages_2mi and re-run 30-talos", "30-talos"),
    "WaitMayastor": WaitMayastor("mayastor", ("talos-worker-01", "talos-worker-02", "talos-worker-03")),
    "WaitDiskPools": WaitDiskPools("openebs.io/v1beta2", "mayastor", ("pool-talos-worker-01", "pool-talos-worker-02")),
    "WaitPvcBound": WaitPvcBound("mayastor", "falkit-mayastor-test"),
    "WriteTestVolume": WriteTestVolume("mayastor", "falkit-mayastor-test"),
    # 10-network, 20-vms, rollback-workers, rollback-vms/-containers/-network
    "StageBridge": network.StageBridge("vmbr1", {"cidr": "10.11.0.1/24", "autostart": 1}, delete=("gateway",)),
    "ReloadNetwork": network.ReloadNetwork(),
    "DownloadTalosIso": vms.DownloadTalosIso("local", "talos-v1.9.5-metal-amd64.iso",
                                             "https://factory.talos.dev/image/376567/v1.9.5/metal-amd64.iso"),
    "CreateClusterVm": vms.CreateClusterVm(202, {"vmid": 202, "name": "talos-worker-02", "cores": "2", "sockets": 1}),
    "SetClusterVmConfig": vms.SetClusterVmConfig(201, {"scsi1": "helford:vm-201-disk-1,discard=on"}, True, True, "unused0"),
    "ResizeClusterDisk": vms.ResizeClusterDisk(203, "scsi1", "300G"),
    "ClusterVmPower": vms.ClusterVmPower(200, "reboot"),
    "DestroyClusterVm": vms.DestroyClusterVm(204, True),
    "RefusedClusterDisk": vms.RefusedClusterDisk(203, "shrink"),
    "CordonWorker": rollback_workers.CordonWorker("talos-worker-02"),
    "DrainWorker": rollback_workers.DrainWorker("talos-worker-02"),
    "ShutdownWorker": rollback_workers.ShutdownWorker(202),
    "DeleteWorkerNode": rollback_workers.DeleteWorkerNode("talos-worker-02"),
    "DestroyWorker": rollback_workers.DestroyWorker(202),
    "RestoreVmConfig": rollback_pve.RestoreVmConfig(200, {"net0": "virtio=52:54:00:10:30:10,bridge=vmbr0"}, ("balloon",)),
    "RebootVmBack": rollback_pve.RebootVmBack(200),
    "StopNewContainer": rollback_pve.StopNewContainer(300),
    "DestroyNewContainer": rollback_pve.DestroyNewContainer(300),
    "RestoreBridge": rollback_pve.RestoreBridge("vmbr0", "update", {"type": "bridge", "cidr": "10.30.0.2/24"}, ("gateway",)),
    "ReloadNetworkBack": rollback_pve.ReloadNetworkBack(),
    "VolumeMove": VolumeMove("media", "sonarr-config",
                             {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                              "metadata": {"name": "sonarr-config-mayastor", "namespace": "media"},
                              "spec": {"storageClassName": "mayastor-3", "accessModes": ["ReadWriteOnce"]}},
                             (("Deployment", "sonarr"),)),
    "VolumeMoveBack": VolumeMoveBack("media", "sonarr-config-mayastor", "sonarr-config", True, "longhorn", "7Gi",
                                     ("ReadWriteOnce",), (("Deployment", "sonarr"),)),
    "BenchCreate": BenchCreate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "falkit-bench"}}),
    "FioRun": FioRun("mayastor", "fio-mayastor", "quick", "0123456789abcdef"),
    "TrueNasCreateVM": TrueNasCreateVM(300, {"vmid": 300, "net0": "virtio=52:54:00:10:10:20,bridge=vmbr0", "sockets": 1}),
    "TrueNasStartVM": TrueNasStartVM(300),
    "TrueNasShare": TrueNasShare("/mnt/tank/media", ("10.11.0.0/24",), True),
    "TrueNasService": TrueNasService("nfs"),
    "PveStorage": PveStorage({"storage": "truenas-media", "type": "nfs", "server": "10.11.0.20", "export": "/mnt/tank/media"}),
    "PlexTemplateDownload": PlexTemplateDownload("local", "debian-12-standard_12.7-1_amd64.tar.zst"),
    "PlexImagePull": PlexImagePull("local", "docker.io/plexinc/pms-docker:latest", "pms-docker_latest"),
    "PlexCreateCT": PlexCreateCT(400, {"vmid": 400, "ostemplate": "local:vztmpl/pms-docker_latest.tar", "swap": 512}),
    "PlexCTConfig": PlexCTConfig(400, {"dev0": "/dev/dri/renderD128,gid=104"}, True),
    "PlexStartCT": PlexStartCT(400),
    "NfsMountServer": NfsMountServer("Deployment", "media", "sonarr", "media", "10.11.0.20"),
    "PlexLibraryClaim": PlexLibraryClaim({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"}},
                                         {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                          "metadata": {"name": "plex-config-lxc", "namespace": "media"}}),
    "PlexLibraryCopy": PlexLibraryCopy("media", "plex-config", "plex-config-lxc", (("Deployment", "plex"),)),
    "PlexStart": PlexStart(400),
    "PlexAnswers": PlexAnswers("10.10.0.30", 400, 120.0, "docker.io/plexinc/pms-docker:latest"),
    "PlexRemoveWorkload": PlexRemoveWorkload("Deployment", "media", "plex", None),
    "PlexDeleteClaim": PlexDeleteClaim("media", "plex-config"),
    "PlexBackStop": PlexBackStop(400),
    "PlexBackCopy": PlexBackCopy("media", "plex-config-lxc", "plex-config"),
    "PlexBackWorkload": PlexBackWorkload({"apiVersion": "apps/v1", "kind": "Deployment",
                                          "metadata": {"name": "plex", "namespace": "media"}, "spec": {"replicas": 1}}),
    "PlexBackDestroy": PlexBackDestroy(400),
}
#: payload types carrying a secret (falkit.plan.payloads.Sealed): never written out, archived redacted only
SEALED = {"TalosSecrets", "TalosClientConfig", "TalosApplyConfig", "TalosAddressConfig"}


def _plan(*payloads) -> Plan:
    return Plan("t", tuple(Change("action", "x", f"n{i}", reason="r", data=p) for i, p in enumerate(payloads)))


def test_every_payload_type_round_trips_through_json_text():
    assert STEPS  # every step module is imported (they may register payload types of their own)
    assert set(EXAMPLES) == set(PAYLOADS), "a payload type without an example here"
    plan = _plan(*(v for k, v in EXAMPLES.items() if k not in SEALED))
    back = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert back == plan
    for a, b in zip(back.changes, plan.changes, strict=True):
        assert type(a.data) is type(b.data) and a.data == b.data
    # tuples come back as tuples (a frozen payload's fields), not lists
    assert back.changes[list(EXAMPLES).index("WaitServiceIPs")].data.services[0] == ("traefik/traefik", "10.10.0.80")


@pytest.mark.parametrize("name", sorted(SEALED))
def test_a_sealed_payload_is_refused_in_the_clear_and_archived_without_its_secret(name):
    plan = _plan(EXAMPLES[name])
    with pytest.raises(TypeError, match="Sealed, which does not serialise"):
        plan.to_json()
    archived = json.dumps(plan.to_json(redact=True))
    assert PLANTED not in archived and "<Sealed: not archived>" in archived and f'"$type": "{name}"' in archived
    assert PLANTED not in str(plan) + repr(plan) + plan._repr_html_()
    loaded = Plan.from_json(json.loads(archived))  # shown again: the same table
    assert type(loaded.changes[0].data).__name__ == name and str(loaded).splitlines()[:2] == str(plan).splitlines()[:2]
    # a sealed value compares by value: the same plan twice is equal, another secret is not
    assert plan == _plan(EXAMPLES[name])
    other = dataclasses.replace(EXAMPLES[name], **{next(f.name for f in dataclasses.fields(EXAMPLES[name])
                                                        if isinstance(getattr(EXAMPLES[name], f.name), Sealed)): Sealed("x")})
    assert plan != _plan(other)


def test_the_payload_counts_in_change_equality():
    a = Change("update", "helm-release", "kube-system/cilium", data=HelmRelease("kube-system", "cilium", "c", "1", {"a": 1}))
    b = Change("update", "helm-release", "kube-system/cilium", data=HelmRelease("kube-system", "cilium", "c", "1", {"a": 2}))
    assert a != b and a == Change(a.op, a.kind, a.name, data=HelmRelease("kube-system", "cilium", "c", "1", {"a": 1}))
    assert hash(a) == hash(b)  # hashable still (the payload is left out of the hash, not of equality)


def test_the_archived_plan_carries_payloads_without_secrets():
    class Sealed:  # as steps/talos.py seals a machine config
        def __repr__(self):
            return "<redacted>"

    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    in_git = GitChange(GitEdit("k/secret.yaml", "a: 1\n", f"tls: |\n  {pem}\n"), "traefik", repo=REPO)
    plan = _plan(EXAMPLES["HelmRelease"], {"config": Sealed(), "ip": "10.10.0.11"}, in_git)
    archived = json.dumps(plan.to_json(redact=True))
    assert PLANTED not in archived and "***REDACTED***" in archived
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in archived  # scrub's patterns over the Git edit's text
    assert '"$type": "HelmRelease"' in archived and "k8sClientRateLimit" in archived
    assert "<Sealed: not archived>" in archived
    with pytest.raises(TypeError, match="does not serialise"):
        _plan({"config": Sealed()}).to_json()  # a plan to be applied later cannot silently lose a value


def test_show_plan_prints_an_archived_plan_as_the_notebook_shows_it(tmp_path):
    plan = Plan("cilium", (Change("update", "helm-release", "kube-system/cilium", "values", "1.18.3", "1.18.4",
                                  reason="values", data=EXAMPLES["HelmRelease"]),
                           Change("delete", "k8s-object", "metallb-system/IPAddressPool/default-pool",
                                  reason="MetalLB", data=EXAMPLES["KubeDelete"])))
    result = {"notebook": "40-cilium", "steps": {"cilium": {"planned": plan.rows(), "plan": plan.to_json(redact=True)},
                                                 "other": {"planned": []}}}
    (tmp_path / "40-cilium.result.json").write_text(json.dumps(result))
    (tmp_path / "plan.json").write_text(json.dumps(plan.to_json(redact=True)))
    for where in (tmp_path / "plan.json", tmp_path / "40-cilium.result.json", tmp_path):
        [loaded] = load_plans(where)
        assert str(loaded).splitlines()[:3] == str(plan).splitlines()[:3]
    r = subprocess.run([sys.executable, "-m", "falkit.cli", "show-plan", str(tmp_path / "40-cilium.result.json"),
                        "--step", "cilium"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("plan cilium: 2 change(s): 0 to add, 1 to change, 1 to destroy"), r.stdout
    assert "~ helm-release kube-system/cilium values" in r.stdout and "+l2announcements:" in r.stdout
    assert PLANTED not in r.stdout
    r = subprocess.run([sys.executable, "-m", "falkit.cli", "show-plan", str(tmp_path / "nope.json")],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "no file" in r.stderr


def test_every_payload_apply_executes_has_one_executor():
    values = {"GitEdit", "ObjectRef", "GitRepo", "SecretSource"}  # parts of payloads, not changes of their own
    assert STEPS
    for name, example in EXAMPLES.items():
        if name not in values:
            assert executors.executable(Change("action", "x", "y", data=example)), name
    with pytest.raises(executors.NoExecutorError, match="its payload is a dict"):
        executors.execute(None, [Change("action", "x", "y", data={"untyped": True})], progress=None)
