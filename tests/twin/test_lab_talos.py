"""The Talos stand-in over the lab API: schema validation of apply (rejected configs store
nothing), what an applied config does (/proc/meminfo hugepages, /proc/modules, disks, hostname),
reaching nodes by MAC (a VM created through proxmoxer answers at its planned IP), connection
refused for unknown/stopped VMs, bootstrap (API 503 before, 409 twice, workers refused) and the
kubeconfig used by the official client.

The ``talosctl`` stand-in (falkit/twin/tools/talosctl.py, run as a subprocess through the wrapper
the supervisor writes) against the same lab (issue 13): apid's TLS as talosctl meets it — a node in
maintenance mode answers a talosconfig with x509's "certificate signed by unknown authority" and
``--insecure`` admin calls with "API is not implemented in maintenance mode" (fault 2); the
before-state nodes accept only talosconfigs of their own OS CA (the operator's secrets.yaml the
twin writes) and refuse others with the same x509 text, ``--insecure`` with "certificate required"
(fault 4); ``service etcd`` and ``health`` output (fault 3). KubePrism (fault 1): Cilium values at
localhost:7445 on nodes without ``machine.features.kubePrism`` keep the Nodes NotReady, with
Cilium's "Unable to contact k8s api-server" on its agent pods."""

from __future__ import annotations

import json
import subprocess

import pytest
import requests
import yaml
from helpers import patched, write_yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from lab_fixtures import start_lab
from pve_fixtures import wait_task

OLD_CP, OLD_WORKER = "10.30.0.10", "10.30.0.11"


def worker_config(hostname: str = "talos-worker-01", *, hugepages: int | None = 1024, modules=("nvme-tcp",),
                  labels=None, extra: dict | None = None) -> str:
    machine: dict = {"type": "worker", "install": {"disk": "/dev/sda"}, "network": {"hostname": hostname},
                     "kernel": {"modules": [{"name": m} for m in modules]},
                     "nodeLabels": labels if labels is not None else {"openebs.io/engine": "mayastor"},
                     "kubelet": {"extraMounts": [{"destination": "/var/local", "type": "bind", "source": "/var/local",
                                                  "options": ["rbind", "rshared", "rw"]}]}}
    if hugepages is not None:
        machine["sysctls"] = {"vm.nr_hugepages": str(hugepages)}
    machine.update(extra or {})
    doc = {"version": "v1alpha1", "machine": machine,
           "cluster": {"clusterName": "homelab-test", "controlPlane": {"endpoint": "https://10.30.0.10:6443"},
                       "network": {"cni": {"name": "none"}}, "proxy": {"disabled": True}}}
    return yaml.safe_dump(doc)


def cp_config() -> str:
    doc = yaml.safe_load(worker_config("talos-cp-01", hugepages=None, modules=(), labels={}))
    doc["machine"]["type"] = "controlplane"
    return yaml.safe_dump(doc)


@pytest.fixture
def lab(lab_unbooted):
    return lab_unbooted


def post(lab, path, body):
    return requests.post(lab.url + "/lab" + path, json=body, timeout=10)


def get(lab, route, **params):
    return requests.get(lab.url + "/lab" + route, params=params, timeout=10)


def test_apply_rejects_unknown_key_and_stores_nothing(lab):
    bad = worker_config(extra={"hugepages": 1024})
    r = post(lab, "/talos/apply", {"node": OLD_WORKER, "config": bad, "insecure": True})
    assert r.status_code == 400
    assert any(i["path"] == "machine" and "hugepages" in i["message"] for i in r.json()["issues"]), r.json()
    r = get(lab, "/talos/config", node=OLD_WORKER)
    assert r.status_code == 404 and "maintenance" in r.json()["error"]
    assert get(lab, "/talos/version", node=OLD_WORKER).json()["maintenance"] is True


def test_apply_rejects_machine_network_on_talos_1_13(tmp_path):
    spec = write_yaml(tmp_path, patched({"versions.talos": "1.13.0"}))
    lab, stop = start_lab(tmp_path, "empty", spec_path=spec, pve_state="before")
    try:
        r = post(lab, "/talos/apply", {"node": OLD_WORKER, "config": worker_config(), "insecure": True})
        assert r.status_code == 400
        assert any(i["path"] == "machine" and "network" in i["message"] for i in r.json()["issues"]), r.json()
        ok = yaml.safe_load(worker_config())
        del ok["machine"]["network"]
        text = yaml.safe_dump(ok) + "---\n" + yaml.safe_dump(
            {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": "talos-worker-01", "auto": "off"})
        r = post(lab, "/talos/apply", {"node": OLD_WORKER, "config": text, "insecure": True})
        assert r.status_code == 200, r.text
        assert r.json()["hostname"] == "talos-worker-01"
    finally:
        stop()


def test_applied_config_takes_effect(lab):
    r = post(lab, "/talos/apply", {"node": OLD_WORKER, "config": worker_config(), "insecure": True})
    assert r.status_code == 200, r.text
    assert r.json()["reboot"] is True
    meminfo = lab.lab.talos_read(OLD_WORKER, "/proc/meminfo")
    fields = {k: v.split()[0] for k, v in (line.split(":", 1) for line in meminfo.splitlines())}
    assert fields["HugePages_Total"] == "1024" and "Hugepagesize:       2048 kB" in meminfo
    assert fields["MemTotal"] == str(9 * 1024 * 1024)  # VM 201: 9 GiB, in kB
    assert "nvme_tcp" in lab.lab.talos_read(OLD_WORKER, "/proc/modules").split()
    assert lab.lab.talos_read(OLD_WORKER, "/sys/block").split() == ["sda", "sdb"]
    assert int(lab.lab.talos_read(OLD_WORKER, "/sys/block/sdb/size")) * 512 == 300 * 1024 ** 3
    cfg = get(lab, "/talos/config", node=OLD_WORKER).json()
    assert cfg["hostname"] == "talos-worker-01" and cfg["type"] == "worker"
    assert "openebs.io/engine: mayastor" in cfg["config"]
    # A configured node no longer accepts --insecure (maintenance API only).
    r = post(lab, "/talos/apply", {"node": OLD_WORKER, "config": worker_config(hugepages=0), "insecure": True})
    assert r.status_code == 502 and "certificate required" in r.json()["error"]
    r = post(lab, "/talos/apply", {"node": OLD_WORKER, "config": worker_config(hugepages=0)})
    assert r.status_code == 200 and r.json()["reboot"] is False
    # hugepages are reserved at boot: fewer pages without a reboot leave them (test_lab_lifecycle)
    assert "HugePages_Total:    1024\n" in lab.lab.talos_read(OLD_WORKER, "/proc/meminfo")


def test_missing_module_and_vm_without_data_disk(lab):
    post(lab, "/talos/apply", {"node": OLD_CP, "config": cp_config(), "insecure": True}).raise_for_status()
    assert lab.lab.talos_read(OLD_CP, "/proc/modules") == ""
    assert lab.lab.talos_read(OLD_CP, "/sys/block").split() == ["sda"]
    r = get(lab, "/talos/read", node=OLD_CP, path="/sys/block/sdb/size")
    assert r.status_code == 404 and "no such file" in r.json()["error"]


def test_unknown_or_stopped_vm_refuses_connections(lab):
    r = post(lab, "/talos/apply", {"node": "10.10.0.13", "config": worker_config(), "insecure": True})
    assert r.status_code == 502 and "connect: connection refused" in r.json()["error"]
    api = lab.pve.api()
    wait_task(api, lab.pve.node, api.nodes(lab.pve.node).qemu(201).status.stop.post())
    lab.ctx.pve.invalidate()
    r = post(lab, "/talos/apply", {"node": OLD_WORKER, "config": worker_config(), "insecure": True})
    assert r.status_code == 502 and f"dial tcp {OLD_WORKER}:50000" in r.json()["error"]


def test_vm_created_with_planned_mac_answers_at_its_ip(lab):
    api = lab.pve.api()
    node = lab.pve.node
    upid = api.nodes(node).qemu.post(vmid=212, name="talos-worker-02", cores=2, memory=9216,
                                     net0="virtio=52:54:00:10:10:12,bridge=vmbr0", scsi0="local-lvm:30",
                                     scsi1="helford:300")
    wait_task(api, node, upid)
    r = post(lab, "/talos/apply", {"node": "10.10.0.12", "config": worker_config("talos-worker-02"), "insecure": True})
    assert r.status_code == 502  # created but not started
    wait_task(api, node, api.nodes(node).qemu(212).status.start.post())
    lab.ctx.pve.invalidate()
    r = post(lab, "/talos/apply", {"node": "10.10.0.12", "config": worker_config("talos-worker-02"), "insecure": True})
    assert r.status_code == 200, r.text
    assert lab.ctx.talos_nodes["10.10.0.12"].vmid == 212


def test_bootstrap_brings_up_the_api_once(lab, tmp_path):
    with pytest.raises(ApiException) as exc:
        lab.core.list_namespace()
    assert exc.value.status == 503
    r = get(lab, "/talos/kubeconfig")
    assert r.status_code == 409
    post(lab, "/talos/apply", {"node": OLD_CP, "config": cp_config(), "insecure": True}).raise_for_status()
    post(lab, "/talos/apply", {"node": OLD_WORKER, "config": worker_config(), "insecure": True}).raise_for_status()
    r = post(lab, "/talos/bootstrap", {"node": OLD_WORKER})
    assert r.status_code == 400 and "worker" in r.json()["error"]
    r = post(lab, "/talos/bootstrap", {"node": OLD_CP})
    assert r.status_code == 200, r.text
    r = post(lab, "/talos/bootstrap", {"node": OLD_CP})
    assert r.status_code == 409 and "etcd data directory is not empty" in r.json()["error"]
    kc = tmp_path / "admin.kubeconfig"
    kc.write_text(yaml.safe_dump(lab.lab.kubeconfig()))
    api = config.new_client_from_config(config_file=str(kc))
    try:
        names = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
        assert {"default", "kube-system"} <= names
        contexts, active = config.list_kube_config_contexts(config_file=str(kc))
        assert active["name"] == "admin@homelab-test"
    finally:
        api.close()
    health = get(lab, "/talos/health").json()
    assert {c["name"]: c["ok"] for c in health["checks"]}["etcd to be healthy"] is True


# ------------------------------------------------------------------------------ the talosctl stand-in

def standin(lab, tmp_path):
    """A ``talosctl`` wrapper (as ``falkit twin up`` writes it) whose twin dir points at this lab."""
    from falkit.twin.supervisor import write_tool_wrappers

    root = tmp_path / "twin-dir"
    root.mkdir(exist_ok=True)
    (root / "connection.json").write_text(json.dumps({"lab_api": lab.url + "/lab"}))
    return str(write_tool_wrappers(root) / "talosctl")


def run(tool, *args):
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def a_talosconfig(tmp_path, bundle_data, name="tc"):
    from lab_fixtures import FAL

    from falkit.model.spec import load_spec
    from falkit.render.talosconfig import SecretsBundle, talosconfig

    path = tmp_path / name
    path.write_text(talosconfig(load_spec(FAL), SecretsBundle(bundle_data)))
    return str(path)


def test_standin_maintenance_node_answers_x509_and_insecure_is_maintenance_only(lab, tmp_path):
    from falkit.render.talosconfig import new_secrets

    tool = standin(lab, tmp_path)
    tc = a_talosconfig(tmp_path, new_secrets().data)
    p = run(tool, "--talosconfig", tc, "-n", OLD_WORKER, "-e", OLD_WORKER, "version", "--short")
    assert p.returncode == 1
    assert p.stderr.strip().endswith("x509: certificate signed by unknown authority\"")
    assert f"error getting version from node {OLD_WORKER}: rpc error: code = Unavailable" in p.stderr
    p = run(tool, "-n", OLD_WORKER, "-e", OLD_WORKER, "version", "--insecure")
    assert p.returncode == 1 and "code = Unimplemented desc = API is not implemented in maintenance mode" in p.stderr
    cfg = tmp_path / "w.yaml"
    cfg.write_text(worker_config())
    p = run(tool, "-n", OLD_WORKER, "-e", OLD_WORKER, "apply-config", "--insecure", "--file", str(cfg))
    assert p.returncode == 0, p.stderr
    assert lab.ctx.talos_nodes[OLD_WORKER].configured


def test_standin_before_nodes_trust_only_their_own_ca(lab_before, tmp_path):
    from falkit.render.talosconfig import new_secrets

    lab = lab_before
    tool = standin(lab, tmp_path)
    operator = yaml.safe_load((lab.ctx.state_dir / "operator" / "secrets.yaml").read_text())
    own = a_talosconfig(tmp_path, operator, "own")
    other = a_talosconfig(tmp_path, new_secrets().data, "other")
    p = run(tool, "--talosconfig", other, "-n", OLD_CP, "-e", OLD_CP, "version")
    assert p.returncode == 1 and "x509: certificate signed by unknown authority" in p.stderr
    p = run(tool, "-n", OLD_CP, "-e", OLD_CP, "version", "--insecure")
    assert p.returncode == 1 and "remote error: tls: certificate required" in p.stderr
    p = run(tool, "--talosconfig", own, "-n", OLD_CP, "-e", OLD_CP, "version")
    assert p.returncode == 0, p.stderr
    assert "Server:\n\tNODE:        10.30.0.10\n\tTag:         v1.11.6" in p.stdout
    p = run(tool, "--talosconfig", own, "-n", OLD_CP, "-e", OLD_CP, "service", "etcd")
    assert p.returncode == 0 and "\nSTATE    Running\n" in p.stdout
    p = run(tool, "--talosconfig", own, "-n", OLD_CP, "-e", OLD_CP, "get", "machineconfig", "-o", "yaml")
    got = yaml.safe_load(p.stdout)
    assert got["node"] == OLD_CP and "talos-cp-01" in got["spec"]
    p = run(tool, "--talosconfig", own, "-n", OLD_CP, "-e", OLD_CP, "bootstrap")
    assert p.returncode == 1
    assert p.stderr.strip() == ("error executing bootstrap: rpc error: code = AlreadyExists desc = etcd data directory "
                                "is not empty")
    p = run(tool, "--talosconfig", own, "-n", OLD_CP, "-e", OLD_CP, "health", "--wait-timeout", "10m")
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert lines[0] == 'discovered nodes: ["10.30.0.10" "10.30.0.11"]'
    assert "waiting for etcd to be healthy: OK" in lines and "waiting for all k8s nodes to report ready: OK" in lines


def test_kubeprism_off_keeps_cilium_from_the_api_server(lab_before):
    lab = lab_before
    # the before state's cilium DaemonSet has its status first (the twin's Helm refuses to upgrade a
    # release whose DaemonSet has none yet: a twin race, not what this test is about)
    lab.wait(lambda: (lab.apps.read_namespaced_daemon_set("cilium", "kube-system").status.desired_number_scheduled
                      or 0) > 0, what="cilium DaemonSet status")
    cilium = next(r for r in lab.lab.call("GET", "/helm/releases")["releases"] if r["name"] == "cilium")
    r = requests.put(lab.url + "/lab/helm/releases/kube-system/cilium", timeout=10,
                     json={"chart": cilium["chart"], "version": cilium["version"],
                           "values": {"ipam": {"mode": "kubernetes"}, "kubeProxyReplacement": True,
                                      "k8sServiceHost": "localhost", "k8sServicePort": 7445}})
    assert r.status_code == 200, r.text

    def not_ready():
        nodes = lab.core.list_node().items
        return nodes and all(next(c.status for c in n.status.conditions if c.type == "Ready") == "False" for n in nodes)

    lab.wait(not_ready, what="Nodes NotReady (KubePrism off)")
    node = lab.core.list_node().items[0]
    cond = next(c for c in node.status.conditions if c.type == "Ready")
    assert "cni plugin not initialized" in cond.message

    def cilium_says_why():
        evs = lab.core.list_namespaced_event("kube-system").items
        return [e for e in evs if e.reason == "BackOff" and "Unable to contact k8s api-server" in e.message]

    ev = lab.wait(cilium_says_why, what="cilium agent BackOff event")[0]
    assert 'dial tcp [::1]:7445: connect: connection refused' in ev.message and ev.type == "Warning"
