"""30-talos through the live path on the twin (issue 13): the runbook facade runs the talos step,
whose one Talos backend runs ``talosctl`` — on the twin the stand-in ``falkit.twin.tools.talosctl``
that ``falkit twin up`` puts in ``STATE/twin/bin`` and falkit.clients.target puts first on PATH.

Covers, in order on one twin (its "before" state, then 00–20 applied through the facade):
- the PATH mechanism: ``talosctl`` on PATH is the twin's wrapper, and no twin-only backend exists;
- fault 4: without the existing cluster's secrets the plan is refused, naming where to put them;
  with the operator's ``secrets.yaml`` in the private dir they are imported (no new CA);
- fault 2: the fresh VMs (maintenance mode, answering a talosconfig with x509's "signed by unknown
  authority") are planned as installs with ``--insecure``;
- fault 3: no bootstrap is planned for a cluster whose etcd runs (``talosctl service etcd``);
- fault 10: with no DHCP reservations the fresh VMs answer at pool addresses, not their planned
  IPs: the plan is refused with what to do; the stand-in finds the node at its lease;
- fault 1: the applied machine configs enable KubePrism (read back with ``talosctl get
  machineconfig``) and after 40-cilium (values at localhost:7445) every Node is Ready; a re-plan of
  30-talos is empty (no bootstrap planned again).
Real processes: the twin on loopback, talosctl stand-in subprocesses, the official clients.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from helpers import patched, write_yaml

from falkit import runbook
from falkit.model.errors import StepError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    from falkit.twin import supervisor

    tmp = tmp_path_factory.mktemp("talos-live")
    params = write_yaml(tmp, patched({}))
    state = tmp / "state"
    saved = {k: os.environ.get(k) for k in ("FALKIT_STATE_DIR", "FALKIT_HEADLESS", "PATH")}
    os.environ["FALKIT_STATE_DIR"] = str(state)
    os.environ["FALKIT_HEADLESS"] = "1"
    conn = supervisor.up(params, state="before", state_dir=state / "twin", time_factor=0.0)
    try:
        lab = runbook.open(params, target="twin", apply=True, notebook="t-talos-live", allow_disruptive=True)
        lab.step("network").apply()
        lab.step("vms").apply()
        yield {"params": params, "state": state, "conn": conn, "lab": lab}
    finally:
        supervisor.down(state / "twin")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _open(twin):
    return runbook.open(twin["params"], target="twin", apply=True, notebook="t-talos-live", allow_disruptive=True)


def _fault(twin, body=None):
    url = twin["conn"]["lab_api"].rstrip("/")
    url = url if url.endswith("/lab") else url + "/lab"
    auth = {"Authorization": "Bearer " + open(twin["conn"]["lab_token_file"]).read().strip()}
    r = (requests.post(url + "/faults", json=body, timeout=10, headers=auth) if body
         else requests.delete(url + "/faults", timeout=10, headers=auth))
    r.raise_for_status()


def test_talosctl_on_path_is_the_twins_stand_in(twin):
    import falkit.clients.backends.talos as backend

    assert shutil.which("talosctl") == str(Path(twin["conn"]["bin_dir"]) / "talosctl")
    assert not hasattr(backend, "TwinTalos") and not hasattr(backend, "LiveTalos")
    out = subprocess.run(["talosctl", "version", "--client"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("Client:\n\tTag:         v")


def test_existing_cluster_without_its_secrets_is_refused(twin):
    lab = twin["lab"]
    kept = lab.target.private_dir / "secrets.yaml"
    text = kept.read_text()
    kept.unlink()
    try:
        with pytest.raises(StepError) as exc:
            _open(twin).step("talos")
        msg = str(exc.value)
        assert "will not generate new secrets for a cluster that already exists" in msg
        assert "secrets.yaml" in msg and "controlplane.yaml" in msg and "terraform.tfstate" in msg
        assert f"put the existing cluster's secrets in {lab.target.private_dir} (mode 0600)" in msg
        assert lab.target.read_private("talos-secrets.yaml") is None  # nothing applied
    finally:
        kept.write_text(text)
        os.chmod(kept, 0o600)


def test_plan_imports_secrets_installs_fresh_vms_insecure_and_does_not_bootstrap(twin):
    plan = _open(twin).step("talos").plan
    by = {(c.kind, c.name): c for c in plan.changes}
    assert "imported from secrets.yaml" in by[("talos-secrets", "talos-secrets.yaml")].reason
    for fresh in ("talos-worker-02", "talos-worker-03"):
        c = by[("talos-config", fresh)]
        assert c.kind == "talos-config" and c.data.insecure is True and c.old == "maintenance"
    for before in ("talos-cp-01", "talos-worker-01"):
        assert by[("talos-config", before)].data.insecure is False
    assert not any(c.kind == "etcd" for c in plan.changes)  # etcd runs: bootstrapped already


def test_fresh_vms_without_dhcp_reservations_are_refused(twin):
    _fault(twin, {"kind": "dhcp_no_reservations"})
    try:
        with pytest.raises(StepError) as exc:
            _open(twin).step("talos")
        msg = str(exc.value)
        assert "talos-worker-02 (planned 10.10.0.12, MAC 52:54:00:10:10:12)" in msg
        assert "DHCP" in msg and "reserve each planned IP for its VM's MAC" in msg
        # the node is there, at the address DHCP leased it (the twin's pool starts at .100)
        p = subprocess.run(["talosctl", "-n", "10.10.0.102", "-e", "10.10.0.102", "version", "--insecure"],
                           capture_output=True, text=True)
        assert p.returncode == 1 and "API is not implemented in maintenance mode" in p.stderr
    finally:
        _fault(twin)


def test_apply_enables_kubeprism_and_cilium_gets_every_node_ready(twin):
    lab = _open(twin)
    lab.step("talos").apply()
    tc = str(lab.target.private_dir / "talosconfig")
    out = subprocess.run(["talosctl", "--talosconfig", tc, "-n", "10.10.0.12", "-e", "10.10.0.12", "get",
                          "machineconfig", "-o", "yaml"], capture_output=True, text=True, check=True).stdout
    main = next(d for d in yaml.safe_load_all(yaml.safe_load(out)["spec"]) if d.get("version") == "v1alpha1")
    assert main["machine"]["features"]["kubePrism"] == {"enabled": True, "port": 7445}
    assert _open(twin).step("talos").plan.empty  # a re-run plans nothing (no second bootstrap)
    lab = _open(twin)
    lab.step("cilium").apply()
    from kubernetes import client

    nodes = client.CoreV1Api(lab.target.kube()).list_node().items
    ready = {n.metadata.name: next(c.status for c in n.status.conditions if c.type == "Ready") for n in nodes}
    assert len(ready) == 4 and set(ready.values()) == {"True"}, ready
