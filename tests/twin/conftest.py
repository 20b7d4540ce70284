"""Fixtures of the twin tests: the pve process (``pve_before``/``pve_empty``, see pve_fixtures),
the lab (``lab_before``/``lab_empty``/``lab_unbooted``, see lab_fixtures), and ``twin``: the kube
emulator alone on 127.0.0.1 (ephemeral port) in a background thread, with clients built from a
generated kubeconfig."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from lab_fixtures import lab_before, lab_empty, lab_unbooted  # noqa: F401 - fixtures of every twin test
from pve_fixtures import pve_before, pve_empty  # noqa: F401 - fixtures of every twin test
from serving import KubeClients, serve

from falkit.twin.kube import Store
from falkit.twin.lab_process import LabProcess, build_app

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = REPO / "falkit" / "data" / "upstream"


@dataclass
class Twin(KubeClients):
    store: Store
    url: str
    kubeconfig: Path
    api: client.ApiClient
    loop: asyncio.AbstractEventLoop

    def call(self, method: str, path: str, body=None, content_type: str = "application/json",
             params=None):
        """Raw HTTP request (for bodies the official client's pydantic checks would refuse)."""
        import json

        import requests

        data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
        return requests.request(method, self.url + path, data=data, params=params, timeout=10,
                                headers={"Content-Type": content_type, "Accept": "application/json"})


@pytest.fixture
def twin(tmp_path):
    store = Store()
    s = serve(LabProcess(store, build_app(store, bookmark_interval=0.3)), tmp_path / "kubeconfig", timeout=10)
    try:
        yield Twin(store, s.url, s.kubeconfig, s.api, s.loop)
    finally:
        s.stop()


@pytest.fixture
def upstream() -> Path:
    return UPSTREAM
