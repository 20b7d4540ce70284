"""Messages of issue 15 item 7, each through the path a user takes:

- a locked VM (the twin Proxmox's ``lock`` fault) fails a falkit PVE call with PVE's words plus how
  to find the lock (``lock: backup`` in ``qm config``), to check no task runs, and ``qm unlock <vmid>``;
- ``falkit plan`` on parameters without nvme_tcp says it is missing from ``talos.kernel_modules``
  (a parameter check), not that it "is not loaded";
- a Git change that replaces an existing manifest file (``mayastor-app.yaml``) is an "update"
  commit, not "add"; a Traefik Service edit whose patch names several annotations lists in its
  commit message only the one Git does not have yet.
"""

from __future__ import annotations

import pytest
from helpers import patched, write_yaml

from falkit.cli import main
from falkit.clients.proxmox import PveCallError, TaskFailedError, call, wait_task
from falkit.model.spec import load_spec
from falkit.render.gitops import Checkout, ObjectRef
from falkit.steps.ownership import plan_file, plan_object_change
from falkit.twin.gitops_fixture import make_fixture_repo


def test_locked_vm_error_says_how_to_find_and_clear_the_lock(pve_before):
    pve_before.control.fault("lock", vmid=201, lock="backup")
    api = pve_before.api()
    with pytest.raises((PveCallError, TaskFailedError)) as e:
        upid = call("shut down VM 201", api.nodes("fal").qemu(201).status.shutdown.post)
        wait_task(api, "fal", upid, timeout=10)
    msg = str(e.value)
    assert "VM is locked (backup)" in msg  # PVE's words first
    assert "lock: backup" in msg and "qm config 201" in msg and "task" in msg and "qm unlock 201" in msg


def test_preflight_says_nvme_tcp_is_missing_from_the_parameters(tmp_path, capsys):
    params = write_yaml(tmp_path, patched({"talos.kernel_modules": ["iscsi_tcp"]}))
    main(["plan", str(params)])
    out = capsys.readouterr().out
    assert "nvme_tcp is missing from talos.kernel_modules" in out and "is not loaded" not in out


def test_git_commit_messages_say_update_and_name_only_what_changed(tmp_path):
    spec = load_spec(write_yaml(tmp_path, patched({})))
    co = Checkout.from_spec(spec.gitops, make_fixture_repo(tmp_path / "gitops", spec))
    rel = f"{spec.gitops.platform_path}/mayastor-app.yaml"
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "mayastor"},
           "spec": {"source": {"targetRevision": "2.8.0"}}}
    assert plan_file(co, rel, [app]).data.edit.message == f"falkit: add {rel}"
    co.root.joinpath(rel).write_text("apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: mayastor\n")
    assert plan_file(co, rel, [app]).data.edit.message == f"falkit: update {rel}"

    svc = ObjectRef("v1", "Service", "traefik", "traefik")
    doc = co.find(svc)
    have = dict(doc.obj["metadata"].get("annotations") or {})
    patch = {"metadata": {"annotations": {**have, "lbipam.cilium.io/ips": "10.10.0.80"}}}
    observed = {**doc.obj, "metadata": {**doc.obj["metadata"], "annotations": {
        **have, "argocd.argoproj.io/tracking-id": "platform:/Service:traefik/traefik"}}}
    change = plan_object_change(svc, observed, patch, co, applications={"platform"})
    assert change.data.edit.message == "falkit: " + str(svc) + ": metadata.annotations.lbipam.cilium.io/ips"
