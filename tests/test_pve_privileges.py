"""Proxmox API token privileges (issue 13 fault 8), on the twin started by the supervisor:

- the twin's token root@pam!falkit is privilege-separated, as a new PVE token is, and holds exactly
  falkit's documented role (falkit/data/pve-role.json) on / — GET /access/permissions shows just
  those privileges, and a call outside the role gets PVE's 403 naming path and privilege;
- before anything is applied, connecting (the runbook facade every notebook opens, and the CLI's
  `falkit run`) reads the token's permissions and refuses a token that lacks a privilege of the
  role, naming it and the pveum fix; nothing reaches Proxmox;
- the one pveum line carries every privilege of the role.
"""

from __future__ import annotations

import pytest
import requests
from proxmoxer import ResourceException
from test_runbook_support import FAL

from falkit import runbook
from falkit.clients.proxmox import pve_role, pveum_line
from falkit.clients.target import connect
from falkit.model.errors import TargetError

pytest_plugins = ("test_runbook_support",)  # the session twin and state_env fixtures


def test_twin_token_is_privilege_separated_with_exactly_the_role(state_env):
    t = connect(FAL, "twin")
    role = pve_role()
    held = t.pve.access.permissions.get(path="/")
    assert held == {"/": {p: 1 for p in sorted(role["privileges"])}}
    with pytest.raises(ResourceException) as exc:  # VM.Snapshot is not in falkit's role
        t.pve.nodes(t.node).qemu(200).snapshot.post(snapname="nope")
    assert exc.value.status_code == 403 and "Permission check failed (/vms/200, VM.Snapshot)" in str(exc.value)


def test_token_missing_a_privilege_is_refused_before_anything_is_applied(state_env):
    base, conn = state_env
    control = conn["pve_control"]
    auth = {"Authorization": "Bearer " + open(conn["pve_control_token_file"]).read().strip()}
    r = requests.post(f"{control}/faults", json={"kind": "token_privilege_missing", "privilege": "VM.PowerMgmt"},
                      timeout=10, headers=auth)
    assert r.status_code == 200, r.text
    try:
        before = requests.get(f"{control}/state", timeout=10, headers=auth).json()
        with pytest.raises(TargetError) as exc:
            runbook.open(str(FAL), "twin", apply=True, notebook="20-vms")
        msg = str(exc.value)
        assert "lacks VM.PowerMgmt on /" in msg and "start/stop/reboot" in msg and "Nothing was applied" in msg
        assert "pveum role add FalkitMigration" in msg and "'root@pam!falkit'" in msg
        after = requests.get(f"{control}/state", timeout=10, headers=auth).json()
        assert {k: v for k, v in after.items() if k != "faults"} == {k: v for k, v in before.items() if k != "faults"}
    finally:
        requests.delete(f"{control}/faults", timeout=10, headers=auth)
    connect(FAL, "twin")  # the full role again: accepted


def test_pveum_line_grants_every_privilege():
    line = pveum_line("root@pam!falkit")
    privs = line.split('--privs "', 1)[1].split('"', 1)[0].split(",")
    assert privs == pve_role()["privileges"] and "pveum acl modify / --tokens 'root@pam!falkit'" in line
