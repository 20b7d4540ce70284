"""The twin's PVE API as falkit's real client sees it (proxmoxer over verified HTTPS).

Covers: TLS verified against the twin's CA (a wrong CA is refused), the node's size (16 threads,
32 GiB, memory used = running guests), storages with the configured sizes and accounted disks, VM
read-back of MACs and disks, VM create with disks on helford, and LXC dev0 passthrough (refused to
the API token as PVE refuses it, allowed to a root@pam ticket).
"""

from __future__ import annotations

import sys

import pytest
import requests
from proxmoxer import ResourceException
from pve_fixtures import wait_task

GIB = 1024 ** 3


def test_tls_is_verified_against_the_twin_ca(pve_before, tmp_path):
    api = pve_before.api()
    assert api.version.get()["version"]
    # A certificate from another CA must not be accepted: the client really verifies.
    other = tmp_path / "other-ca.pem"
    other.write_bytes(_foreign_cert_pem())
    with pytest.raises(requests.exceptions.SSLError):
        pve_before.api(verify=str(other)).version.get()
    # The system trust store does not know the twin either.
    with pytest.raises(requests.exceptions.SSLError):
        pve_before.api(verify=True).version.get()


def _foreign_cert_pem() -> bytes:
    """A certificate for the same address that the twin did not issue (generated in a child process,
    so this test process imports neither fakepve nor its cert helper)."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-c", "import sys; from fakepve.certs import make_cert; "
                        "make_cert(sys.argv[1], name='other', hosts=('127.0.0.2',))", d], check=True)
        with open(f"{d}/other.crt", "rb") as fh:
            return fh.read()


def test_wrong_token_is_refused(pve_before):
    from proxmoxer import ProxmoxAPI
    info = pve_before.info
    api = ProxmoxAPI(info["host"], port=info["port"], user="root@pam", token_name="falkit",
                     token_value="00000000-0000-0000-0000-000000000000", verify_ssl=info["ca_file"])
    with pytest.raises(ResourceException) as exc:
        api.nodes.get()
    assert exc.value.status_code == 401


def test_node_status_reports_the_fal(pve_before):
    api = pve_before.api()
    st = api.nodes("fal").status.get()
    assert st["cpuinfo"]["cpus"] == 16
    assert st["cpuinfo"]["cores"] == 8 and st["cpuinfo"]["sockets"] == 1
    assert "6800HX" in st["cpuinfo"]["model"]
    assert st["memory"]["total"] == 32 * GIB
    # 200 (4 GiB) and 201 (9 GiB) are running.
    assert st["memory"]["used"] == 13 * GIB
    node = api.nodes.get()[0]
    assert (node["node"], node["maxcpu"], node["maxmem"]) == ("fal", 16, 32 * GIB)
    upid = api.nodes("fal").qemu(201).status.stop.post()
    assert wait_task(api, "fal", upid)["exitstatus"] == "OK"
    assert api.nodes("fal").status.get()["memory"]["used"] == 4 * GIB


def test_storages_have_the_configured_sizes_and_account_disks(pve_before):
    api = pve_before.api()
    stores = {s["storage"]: s for s in api.nodes("fal").storage.get()}
    assert set(stores) == {"local", "local-lvm", "helford"}
    assert stores["local-lvm"]["total"] == 140 * 10 ** 9
    assert stores["helford"]["total"] == 1000 * 10 ** 9
    assert stores["helford"]["type"] == "lvmthin"
    # Two 30 GiB OS disks on local-lvm, the 300 GiB Longhorn disk on helford.
    assert stores["local-lvm"]["used"] == 60 * GIB
    assert stores["helford"]["used"] == 300 * GIB
    assert stores["helford"]["avail"] == 1000 * 10 ** 9 - 300 * GIB
    content = api.nodes("fal").storage("helford").content.get()
    assert [(c["volid"], c["size"]) for c in content] == [("helford:vm-201-disk-0", 300 * GIB)]


def test_before_vms_read_back_with_macs_and_disks(pve_before):
    api = pve_before.api()
    vms = {v["vmid"]: v for v in api.nodes("fal").qemu.get()}
    assert {v: (vms[v]["name"], vms[v]["status"]) for v in vms} == {
        200: ("talos-cp-01", "running"), 201: ("talos-worker-01", "running")}
    cp = api.nodes("fal").qemu(200).config.get()
    assert cp["net0"] == "virtio=52:54:00:10:30:10,bridge=vmbr0"
    assert (cp["cores"], cp["memory"]) == (2, "4096")
    assert cp["scsi0"].startswith("local-lvm:vm-200-disk-0,") and "size=30G" in cp["scsi0"]
    wk = api.nodes("fal").qemu(201).config.get()
    assert wk["net0"] == "virtio=52:54:00:10:30:11,bridge=vmbr0"
    assert wk["memory"] == "9216"
    assert wk["scsi1"].startswith("helford:vm-201-disk-0,") and "size=300G" in wk["scsi1"]


def test_vm_create_reads_back_and_uses_storage(pve_empty):
    api = pve_empty.api()
    before = {s["storage"]: s["avail"] for s in api.nodes("fal").storage.get()}
    upid = api.nodes("fal").qemu.post(vmid=202, name="talos-worker-02", cores=2, memory=9216,
                                      net0="virtio=52:54:00:10:10:12,bridge=vmbr0",
                                      net1="virtio=52:54:00:10:11:12,bridge=vmbr1",
                                      scsi0="local-lvm:30", scsi1="helford:300", scsihw="virtio-scsi-single")
    assert wait_task(api, "fal", upid)["exitstatus"] == "OK"
    cfg = api.nodes("fal").qemu(202).config.get()
    assert cfg["net0"] == "virtio=52:54:00:10:10:12,bridge=vmbr0"
    assert cfg["net1"] == "virtio=52:54:00:10:11:12,bridge=vmbr1"
    assert cfg["scsi0"] == "local-lvm:vm-202-disk-0,size=30G"
    assert cfg["scsi1"] == "helford:vm-202-disk-0,size=300G"
    after = {s["storage"]: s["avail"] for s in api.nodes("fal").storage.get()}
    assert before["helford"] - after["helford"] == 300 * GIB
    assert before["local-lvm"] - after["local-lvm"] == 30 * GIB


def test_vm_create_beyond_free_space_fails_in_the_task(pve_empty):
    api = pve_empty.api()
    upid = api.nodes("fal").qemu.post(vmid=210, name="too-big", scsi0="helford:1000")
    st = wait_task(api, "fal", upid)
    assert "No space left on device" in st["exitstatus"]
    assert 210 not in [v["vmid"] for v in api.nodes("fal").qemu.get()]


LXC = dict(vmid=400, hostname="plex", ostemplate="local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
           cores=2, memory=2048, rootfs="local-lvm:8", unprivileged=1,
           net0="name=eth0,bridge=vmbr0,hwaddr=52:54:00:10:10:30,ip=10.10.0.30/24,gw=10.10.0.1",
           dev0="/dev/dri/renderD128,gid=104")


def test_lxc_dev0_is_refused_to_the_api_token(pve_empty):
    """PVE's check_ct_modify_config_perm compares the user with 'root@pam' literally: a token fails."""
    api = pve_empty.api()
    with pytest.raises(ResourceException) as exc:
        api.nodes("fal").lxc.post(**LXC)
    assert exc.value.status_code == 403
    assert "configuring device passthrough is only allowed for root@pam" in str(exc.value)
    assert api.nodes("fal").lxc.get() == []


def test_lxc_dev0_with_a_root_ticket_reads_back(pve_empty):
    api = pve_empty.api_password()
    # a fresh host has no LXC template: download it from the appliance index first (pveam download)
    assert wait_task(api, "fal", api.nodes("fal").aplinfo.post(storage="local", template=LXC["ostemplate"].rsplit(
        "/", 1)[-1]))["exitstatus"] == "OK"
    upid = api.nodes("fal").lxc.post(**LXC)
    assert wait_task(api, "fal", upid)["exitstatus"] == "OK"
    cfg = api.nodes("fal").lxc(400).config.get()
    assert cfg["dev0"] == "/dev/dri/renderD128,gid=104"
    assert cfg["hostname"] == "plex"
    assert cfg["rootfs"].startswith("local-lvm:vm-400-disk-0")
    assert "hwaddr=52:54:00:10:10:30" in cfg["net0"]


def test_the_test_process_never_imports_fakepve():
    assert "fakepve" not in sys.modules
    assert "falkit.twin.pve_process" not in sys.modules
