"""Every wait says what it waits for at least every 10 s (issue 12, item 5).

Covers :class:`falkit.clients.kube.WaitReporter` (a line per interval, naming the object and what it reports,
with a fake clock over 35 simulated seconds), and the waits that use it against the twin's Proxmox
API over HTTPS with a short interval (``$FALKIT_WAIT_REPORT_S``): :func:`falkit.clients.kube.wait_for`
(printed lines, and the message of a headless progress bar), :func:`falkit.clients.kube.wait_until` (the
volume moves' waits) and :func:`falkit.clients.proxmox.wait_task` on a Proxmox task that really takes seconds
(the twin's ``slow_task`` fault at time factor 1). The Argo CD sync wait's lines and its fail-fast
are covered through ``falkit run`` in tests/test_cli_twin.py.
"""

from __future__ import annotations

import io
import re
import time

import pytest
from helpers import FAL

from falkit.clients.journal import Journal
from falkit.clients.kube import REPORT_EVERY_S, WaitReporter, WaitTimeoutError, wait_for, wait_until
from falkit.clients.proxmox import task_label, token_client, wait_task
from falkit.model.errors import StepError
from falkit.twin import supervisor
from falkit.twin.pvecontrol import PveControl
from falkit.ui.widgets import Progress


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_reporter_says_what_it_waits_for_every_10_s_with_a_fake_clock():
    clock, out = FakeClock(), io.StringIO()
    report = WaitReporter("Argo CD to sync traefik (Service traefik/traefik)", 600, out=out, clock=clock)
    assert report.every == REPORT_EVERY_S == 10.0
    while clock.t < 1035.0:  # a poll every 0.2 s for 35 s
        report("traefik: Synced/Healthy revision 1757f84d3a; Service traefik/traefik not yet")
        clock.t += 0.2
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert [re.search(r"\((\d+) s of 600 s\)$", line).group(1) for line in lines] == ["10", "20", "30"]
    assert lines[0].startswith("waiting for Argo CD to sync traefik (Service traefik/traefik): traefik: Synced/Healthy")
    report("done", done=True)
    assert len(out.getvalue().splitlines()) == 3  # the end is not a "waiting" line


@pytest.fixture(scope="module")
def pve(tmp_path_factory):
    """The twin's Proxmox half (time factor 1: tasks take real time), a verified proxmoxer client
    and its control API."""
    root = tmp_path_factory.mktemp("waits") / "twin"
    conn = supervisor.up(str(FAL), state="before", state_dir=root, time_factor=1.0, with_lab=False, quiet=True)
    try:
        px = conn["proxmox"]
        token = open(px["token_file"]).read().strip()
        client = token_client(px["host"], int(px["port"]), f"{px['user']}!{px['token_name']}", token, px["ca_file"],
                              hooks=[Journal().pve_hook])
        yield client, px["node"], PveControl(conn)
    finally:
        supervisor.down(root)


def vm_status(client, node, vmid):
    return client.nodes(node).qemu(vmid).status.current.get()["status"]


def test_wait_for_on_the_twin_prints_what_it_waits_for(pve, monkeypatch, capsys):
    client, node, _ = pve
    monkeypatch.setenv("FALKIT_WAIT_REPORT_S", "0.3")
    with pytest.raises(WaitTimeoutError):
        wait_for(lambda: vm_status(client, node, 201), lambda s: s == "stopped", 1.6, "VM 201 to stop",
                 describe=lambda s: f"VM 201 is {s}")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 4, lines
    assert all(re.fullmatch(r"waiting for VM 201 to stop: VM 201 is running \(\d\.\d s of 1\.6 s\)", x) for x in lines)


def test_wait_for_with_a_progress_bar_updates_its_message_each_interval(pve, monkeypatch):
    client, node, _ = pve
    monkeypatch.setenv("FALKIT_WAIT_REPORT_S", "0.3")
    out = io.StringIO()
    bar = Progress("50-mayastor", interactive_mode=False, stream=out).task("VM 201 stopped")
    with pytest.raises(WaitTimeoutError):
        wait_for(lambda: vm_status(client, node, 201), lambda s: s == "stopped", 1.6, "VM 201 to stop", bar,
                 describe=lambda s: f"VM 201 is {s}")
    waited = [x for x in out.getvalue().splitlines() if "(waiting " in x]
    assert len(waited) >= 4 and all(x.startswith("[50-mayastor] VM 201 stopped: ") for x in waited), out.getvalue()
    assert re.search(r"VM 201 is running \(waiting 0\.\d s of 1\.6 s\)$", waited[0]), waited[0]


def test_wait_until_prints_the_step_and_what(monkeypatch, capsys):
    monkeypatch.setenv("FALKIT_WAIT_REPORT_S", "0.2")
    with pytest.raises(StepError, match="radarr scaled down: not done after 1 s"):
        wait_until("volumes", "radarr scaled down", 1.0, lambda: False, poll=0.05)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 3 and lines[0].startswith("waiting for volumes: radarr scaled down: not yet (0.2 s of 1 s)")


def test_wait_task_names_the_task_while_a_proxmox_task_runs(pve, monkeypatch, capsys):
    client, node, ctl = pve
    monkeypatch.setenv("FALKIT_WAIT_REPORT_S", "0.3")
    ctl.fault("slow_task", vmid=200, action="stop", secs=2)
    try:
        upid = client.nodes(node).qemu(200).status.stop.post()
        t0 = time.monotonic()
        status = wait_task(client, node, upid, timeout=30)
        assert status["exitstatus"] == "OK" and time.monotonic() - t0 >= 1.5
    finally:
        ctl.clear()
    assert task_label(upid) == "qmstop 200"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 3, lines
    assert all(x.startswith(f"waiting for Proxmox task qmstop 200 on {node}: running (") for x in lines)
