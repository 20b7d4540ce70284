"""What the emulator fixture (``conftest.twin``) and the lab fixtures (``lab_fixtures``) share: a
LabProcess served on 127.0.0.1 (ephemeral port) from an event loop in a background thread, a
kubeconfig for it, and the official client's typed APIs over that kubeconfig."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client, config

from falkit.twin.kube import kubeconfig
from falkit.twin.lab_process import LabProcess


class KubeClients:
    """Typed APIs over ``self.api`` (an ApiClient built from the kubeconfig)."""

    api: client.ApiClient

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


@dataclass
class Served:
    url: str
    kubeconfig: Path
    api: client.ApiClient
    loop: asyncio.AbstractEventLoop
    stop: Callable[[], None]


def serve(proc: LabProcess, kubeconfig_path: Path, timeout: float = 20.0) -> Served:
    """Start ``proc`` on 127.0.0.1:0 in a background loop; ``stop()`` closes the client and the loop."""
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    url = asyncio.run_coroutine_threadsafe(proc.start("127.0.0.1", 0), loop).result(timeout)
    kubeconfig_path.write_text(yaml.safe_dump(kubeconfig(url)))
    api = config.new_client_from_config(config_file=str(kubeconfig_path))

    def stop() -> None:
        api.close()
        asyncio.run_coroutine_threadsafe(proc.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()

    return Served(url, kubeconfig_path, api, loop, stop)
