"""Fixtures for the lab tests: a real pve process (HTTPS, its own process) and the lab app (kube
emulator + lab API + controllers, ``falkit.twin.lab.api.install``) on 127.0.0.1 in a background thread.

``lab_before`` starts the pre-migration lab (``--state before``); ``lab_empty`` a bare Proxmox
host with an unbootstrapped cluster; both with time factor 0. Tests talk to them over HTTP only:
``requests``/``LabClient`` for the lab API, the official kubernetes client for objects.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from pve_fixtures import PveTwin, fal_spec, start_pve, stop_pve
from serving import KubeClients, serve

from falkit.model.spec import load_spec
from falkit.twin.kube import Store
from falkit.twin.lab import LabContext
from falkit.twin.lab.api import install
from falkit.twin.lab.client import LabClient
from falkit.twin.lab_process import LabProcess, build_app
from falkit.twin.supervisor import pve_config_from_spec

ROOT = Path(__file__).resolve().parents[2]
FAL = ROOT / "parameters" / "fal.yaml"


@dataclass
class Lab(KubeClients):
    ctx: LabContext
    store: Store
    url: str
    pve: PveTwin
    lab: LabClient
    api: client.ApiClient
    loop: asyncio.AbstractEventLoop

    def wait(self, predicate, timeout: float = 10.0, what: str = "condition"):
        """Poll ``predicate()`` until truthy (returns it); fail the test on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            got = predicate()
            if got:
                return got
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.05)


def start_lab(tmp_path: Path, state: str, spec_path: Path = FAL, time_factor: float = 0.0,
              pve_state: str | None = None, restore: Path | None = None):
    pve = start_pve(tmp_path / "pve", pve_config_from_spec(fal_spec(), pve_state or state))
    store = Store()
    app = build_app(store, bookmark_interval=0.3)
    args = argparse.Namespace(spec=spec_path, state=state, time_factor=time_factor,
                              pve_conn=tmp_path / "pve" / "pve.json", restore=restore, state_dir=tmp_path)
    ctx = install(app, store, args)
    # no ctx.tick: the controllers run event-driven, as in the lab process (issue 17)
    s = serve(LabProcess(store, app), tmp_path / "kubeconfig")
    ctx.kube_server = s.url

    def stop() -> None:
        s.stop()
        stop_pve(pve.proc)

    return Lab(ctx, store, s.url, pve, LabClient(s.url), s.api, s.loop), stop


@pytest.fixture
def lab_before(tmp_path):
    lab, stop = start_lab(tmp_path, "before")
    try:
        yield lab
    finally:
        stop()


@pytest.fixture
def lab_empty(tmp_path):
    lab, stop = start_lab(tmp_path, "empty")
    try:
        yield lab
    finally:
        stop()


@pytest.fixture
def lab_unbooted(tmp_path):
    """Unbootstrapped cluster; the pve process has the before VMs (maintenance mode at 10.30.0.10/11)."""
    lab, stop = start_lab(tmp_path, "empty", pve_state="before")
    try:
        yield lab
    finally:
        stop()


def fal():
    return load_spec(FAL)
