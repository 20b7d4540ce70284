"""Fixtures: the kube emulator on 127.0.0.1 (ephemeral port) in a background thread, and clients
built from a generated kubeconfig."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from falkit.twin.kube import Store, kubeconfig
from falkit.twin.lab_process import LabProcess, build_app

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = REPO / "falkit" / "data" / "upstream"


@dataclass
class Twin:
    store: Store
    url: str
    kubeconfig: Path
    api: client.ApiClient
    loop: asyncio.AbstractEventLoop

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def dynamic(self):
        from kubernetes.dynamic import DynamicClient

        return DynamicClient(self.api)

    def call(self, method: str, path: str, body=None, content_type: str = "application/json",
             params=None):
        """Raw HTTP request (for bodies the official client's pydantic checks would refuse)."""
        import requests

        data = body if isinstance(body, str | bytes) or body is None else __import__("json").dumps(body)
        return requests.request(method, self.url + path, data=data, params=params, timeout=10,
                                headers={"Content-Type": content_type, "Accept": "application/json"})


@pytest.fixture
def twin(tmp_path):
    store = Store()
    lab = LabProcess(store, build_app(store, bookmark_interval=0.3))
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    url = asyncio.run_coroutine_threadsafe(lab.start("127.0.0.1", 0), loop).result(10)
    kc = tmp_path / "kubeconfig"
    kc.write_text(yaml.safe_dump(kubeconfig(url)))
    api = config.new_client_from_config(config_file=str(kc))
    try:
        yield Twin(store, url, kc, api, loop)
    finally:
        api.close()
        asyncio.run_coroutine_threadsafe(lab.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()


@pytest.fixture
def upstream() -> Path:
    return UPSTREAM
