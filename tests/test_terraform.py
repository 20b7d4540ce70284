"""Terraform ownership (issue 14): the seed's ``infrastructure/terraform`` in the twin's GitOps
fixture follows the migration, through ``falkit run`` of 00-preflight, 10-network and 20-vms.

Covers:
- the run edits the fixture's Terraform and commits it on the GitOps branch; the edited files,
  parsed here with python-hcl2, hold the values of falkit's derived design (MAC prefixes, storage MACs,
  workers with their storage_ip, cilium_lb_ip_pool, mayastor_disk, the storage-NIC variables, no
  MetalLB); without ``terraform`` on PATH the step says "terraform not on PATH: not checked";
- a second run plans nothing and commits nothing;
- ``rollback-terraform`` (the runbook facade, as 80-rollback runs it) restores every file the
  twin's fixture wrote before the migration, and a second rollback plans nothing;
- a ``terraform`` stand-in first on PATH that plans a destroy (Terraform's plan text, exit 2 of
  ``-detailed-exitcode``) stops the run at 20-vms, naming the resource; it was run with
  ``plan -detailed-exitcode`` in the Terraform directory; resumed with ``allow_destructive=true``
  the run passes, the destroy still shown.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import hcl2
import pytest
from test_runbook_support import FAL, ROOT

from falkit.cli import main
from falkit.model.design import design_of
from falkit.model.spec import load_spec
from falkit.render.gitops import git
from falkit.runbook.nbbuild import build
from falkit.twin import supervisor
from falkit.twin.gitops_fixture import TERRAFORM_DIR, terraform_files

ARGS = ["--only", "00", "10", "20"]


def _path_without_terraform() -> str:
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not os.access(os.path.join(d, "terraform"), os.X_OK)]
    return os.pathsep.join(keep)


@pytest.fixture
def twin(tmp_path, monkeypatch):
    base = tmp_path / "state"
    conn = supervisor.up(str(FAL), state="before", state_dir=base / "twin")
    monkeypatch.setenv("FALKIT_STATE_DIR", str(base))
    monkeypatch.setenv("FALKIT_HEADLESS", "1")
    monkeypatch.delenv("FALKIT_RUN_DIR", raising=False)
    monkeypatch.setenv("PATH", _path_without_terraform())  # never the machine's real terraform
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    build(ROOT / "notebooks" / "src", nbs)
    monkeypatch.setenv("FALKIT_NOTEBOOKS_DIR", str(nbs))
    try:
        yield Path(conn["gitops"]["checkout"]), tmp_path / "outputs"
    finally:
        supervisor.down(base / "twin")


def _parse(root: Path, rel: str) -> dict:
    return hcl2.loads((root / TERRAFORM_DIR / rel).read_text(),
                      serialization_options=hcl2.SerializationOptions(with_comments=False, strip_string_quotes=True,
                                                                      explicit_blocks=False))


def _merged(doc: dict, kind: str) -> dict:
    out: dict = {}
    for b in doc.get(kind) or []:
        out.update(b)
    return out


def _result(run_dir: Path, nb: str = "20-vms") -> dict:
    return json.loads((run_dir / f"{nb}.result.json").read_text())


def _runs(outputs: Path) -> list[Path]:
    return sorted(p for p in outputs.iterdir() if p.is_dir())


def test_run_edits_terraform_to_the_plan_rerun_plans_nothing_rollback_restores(twin):
    checkout, outputs = twin
    spec = load_spec(FAL)
    design = design_of(spec)
    before_head = git(checkout, "rev-parse", "HEAD").strip()
    before_files = {rel: (checkout / rel).read_text() for rel in terraform_files(spec) if rel.endswith(".tf")}

    assert main(["run", "--params", str(FAL), "--outputs", str(outputs), *ARGS]) == 0
    first = _runs(outputs)[0]
    res = _result(first)
    step = res["steps"]["terraform"]
    assert "terraform not on PATH: not checked" in step["notes"]
    assert step["applied"] and step["converged"] is True
    tf_checks = [c for c in res["checks"] if c["step"] == "terraform"]
    assert tf_checks and all(c["ok"] for c in tf_checks)

    # the files, parsed back here, carry the derived design's values
    variables = _merged(_parse(checkout, "variables.tf"), "variable")
    local = _merged(_parse(checkout, "locals.tf"), "locals")
    main_tf = _parse(checkout, "main.tf")
    workers = design.workers
    assert local["mac_prefix"] == spec.networks.management.mac_prefix == "52:54:00:10:10"
    assert local["mac_addresses"] == {v.name: v.nics[0].mac for v in design.vms if v.role in ("control-plane", "worker")}
    assert local["storage_mac_addresses"] == {w.name: w.nics[1].mac for w in workers}
    assert local["storage_mac_addresses"]["talos-worker-03"] == "52:54:00:10:11:13"
    assert [(w["name"], w["ip"], w["storage_ip"], w["mayastor_disk_size"]) for w in variables["workers"]["default"]] == \
        [(w.name, w.ip, w.storage_ip, w.disks[1].size_gb) for w in workers]
    assert variables["cilium_lb_ip_pool"]["default"] == "10.10.0.50-10.10.0.99"
    assert variables["storage_bridge"]["default"] == "vmbr1" and variables["storage_gateway"]["default"] == "10.11.0.1"
    assert variables["proxmox_mayastor_storage"]["default"] == "helford"
    assert not {"metallb_ip_range", "metallb_version", "proxmox_longhorn_storage"} & set(variables)
    resources = {f"{t}.{n}" for r in main_tf.get("resource") or [] for t, ns in r.items() for n in ns}
    assert not [r for r in resources if "metallb" in r] and "talos_machine_secrets.this" in resources
    worker_call = _merged(main_tf, "module")["talos_worker"]
    assert worker_call["enable_storage_network"] is True and "longhorn_disk" not in worker_call
    assert worker_call["mayastor_disk"]["datastore_id"] == "${var.proxmox_mayastor_storage}"
    vm_vars = set(_merged(_parse(checkout, "modules/talos-vm/variables.tf"), "variable"))
    assert {"enable_storage_network", "storage_bridge", "storage_mac_address", "mayastor_disk"} <= vm_vars
    assert "longhorn_disk" not in vm_vars
    vm = _parse(checkout, "modules/talos-vm/main.tf")["resource"][0]["proxmox_virtual_environment_vm"]["this"]
    dyn = {k: v for d in vm["dynamic"] for k, v in d.items()}
    assert dyn["network_device"]["content"][0]["mac_address"] == "${var.storage_mac_address}"
    assert {"enable_storage_network", "storage_bridge", "storage_mac_address"} <= \
        set(_merged(_parse(checkout, "modules/truenas-vm/variables.tf"), "variable"))
    # committed on the GitOps branch; the comments outside the edited blocks are kept
    assert git(checkout, "rev-parse", "--abbrev-ref", "HEAD").strip() == spec.gitops.branch
    assert "falkit: Terraform follows the migration" in git(checkout, "log", "-1", "--format=%s", "--", TERRAFORM_DIR)
    assert "# TrueNAS (currently commented out)" in (checkout / TERRAFORM_DIR / "main.tf").read_text()
    assert git(checkout, "status", "--porcelain").strip() == ""

    # a re-run plans nothing
    head = git(checkout, "rev-parse", "HEAD").strip()
    assert head != before_head
    assert main(["run", "--params", str(FAL), "--outputs", str(outputs), *ARGS]) == 0
    again = _result(_runs(outputs)[-1])["steps"]["terraform"]
    assert again["planned"] == [] and again["status"] == "noop"
    assert git(checkout, "rev-parse", "HEAD").strip() == head

    # the rollback restores the files as the fixture wrote them
    from falkit import runbook

    lab = runbook.open(FAL, target="twin", apply=True, notebook="80-rollback", rollback=True)
    lab.step("rollback-terraform").apply()
    checks = lab.checks("rollback-terraform")
    assert checks and all(c.ok for c in checks)
    for rel, text in before_files.items():
        assert (checkout / rel).read_text() == text, rel
    assert git(checkout, "diff", before_head, "HEAD", "--", TERRAFORM_DIR).strip() == ""
    assert lab.step("rollback-terraform").plan.empty


PLAN_OUTPUT = """\
module.talos_cp.proxmox_virtual_environment_vm.this: Refreshing state... [id=200]
module.talos_worker["talos-worker-01"].proxmox_virtual_environment_vm.this: Refreshing state... [id=201]

Terraform used the selected providers to generate the following execution
plan. Resource actions are indicated with the following symbols:
  ~ update in-place
  - destroy

Terraform will perform the following actions:

  # module.talos_cp.proxmox_virtual_environment_vm.this will be updated in-place
  ~ resource "proxmox_virtual_environment_vm" "this" {
        id   = "200"
        name = "talos-cp-01"
      ~ tags = [
          + "migrated",
            # (2 unchanged elements hidden)
        ]
        # (30 unchanged attributes hidden)
    }

  # module.talos_worker["talos-worker-02"].proxmox_virtual_environment_vm.this will be destroyed
  # (because key ["talos-worker-02"] is not in for_each map)
  - resource "proxmox_virtual_environment_vm" "this" {
      - id        = "202" -> null
      - name      = "talos-worker-02" -> null
      - node_name = "fal" -> null
    }

Plan: 0 to add, 1 to change, 1 to destroy.
"""


def test_terraform_plan_with_a_destroy_stops_the_run_naming_the_resource(twin, tmp_path, monkeypatch):
    checkout, outputs = twin
    tf_root = checkout / TERRAFORM_DIR
    (tf_root / ".terraform").mkdir()  # an initialised directory (git-ignored, as terraform init leaves it)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "terraform-calls"
    standin = bindir / "terraform"
    standin.write_text(f"#!/bin/sh\necho \"$PWD|$*\" >> {record}\ncat <<'EOF'\n{PLAN_OUTPUT}EOF\nexit 2\n")
    standin.chmod(standin.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    assert main(["run", "--params", str(FAL), "--outputs", str(outputs), *ARGS]) == 1
    run_dir = _runs(outputs)[0]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed" and run["failed"]["notebook"] == "20-vms"
    res = _result(run_dir)
    address = 'module.talos_worker["talos-worker-02"].proxmox_virtual_environment_vm.this'
    stop = run["failed"]["evalue"]  # what the run printed when it stopped
    assert address in stop and "will be destroyed" in stop and res["status"] == "failed"
    rows = {c["subject"]: c for c in res["checks"] if c["step"] == "terraform" and c["check"] == "terraform plan"}
    assert rows[address]["ok"] is False
    assert rows["module.talos_cp.proxmox_virtual_environment_vm.this"]["observed"] == "will be updated in-place"
    calls = record.read_text().splitlines()
    assert calls and all(c.startswith(f"{tf_root}|plan -detailed-exitcode -no-color") for c in calls)

    # allowed explicitly, the same plan no longer stops the run (the row stays, marked ok)
    assert main(["run", "--outputs", str(outputs), "--resume", str(run_dir), "--set", "allow_destructive=true"]) == 0
    res = _result(run_dir)
    rows = {c["subject"]: c for c in res["checks"] if c["step"] == "terraform" and c["check"] == "terraform plan"}
    assert rows[address]["ok"] is True and rows[address]["observed"] == "will be destroyed"
    assert res["status"] == "ok" and len(record.read_text().splitlines()) == len(calls) + 1
