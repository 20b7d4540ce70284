"""A small client of the lab API for tests and demos (loopback only).

    lab = LabClient(connection)                # connection.json's data (or lab.json's)
    lab = LabClient(connection["lab_api"])     # "http://127.0.0.1:PORT" or ".../lab"
    lab.fault("node_not_ready", node="talos-worker-01")
    lab.state()["talos_nodes"]
    lab.clear_faults()
    lab.snapshot("snapshots/lab.json")       # only inside the twin's state directory

The lab API needs the token of the twin's ``lab-token`` file (0600) as ``Authorization: Bearer``:
read from the file the connection data names (``lab_token_file``), or, given only a URL, from the
connection file of the twin serving it (:func:`falkit.twin.credentials.find_token`).
"""

from __future__ import annotations

from typing import Any

import requests

from falkit.model.errors import TwinError
from falkit.twin import credentials


class LabApiError(TwinError):
    """A non-2xx answer; ``status`` and the parsed ``body`` (``{"error", "issues"}``) are kept."""

    def __init__(self, status: int, body: Any, what: str) -> None:
        self.status = status
        self.body = body
        msg = body.get("error") if isinstance(body, dict) else body
        super().__init__(f"lab API {what}: {status} {msg}")


class LabClient:
    def __init__(self, url: str | dict, timeout: float = 30.0, *, token: str | None = None) -> None:
        if isinstance(url, dict):
            token = token or credentials.read_token(url.get("lab_token_file"))
            url = str(url.get("lab_api") or "")
        if not url.startswith(("http://127.", "http://localhost")):
            raise TwinError(f"the lab API is loopback only, not {url!r}")
        url = url.rstrip("/")
        self.url = url if url.endswith("/lab") else url + "/lab"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False
        token = token or credentials.find_token("lab_api", self.url)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        try:
            body = r.json()
        except ValueError:
            body = r.text
        if not r.ok:
            raise LabApiError(r.status_code, body, f"{method} {path}")
        return body

    def fault(self, kind: str, **fields: Any) -> dict:
        return self.call("POST", "/faults", json={"kind": kind, **fields})["fault"]

    def faults(self) -> dict:
        return self.call("GET", "/faults")

    def clear_faults(self) -> int:
        return self.call("DELETE", "/faults")["cleared"]

    def state(self) -> dict:
        return self.call("GET", "/state")

    def snapshot(self, path: str) -> str:
        return self.call("POST", "/snapshot", json={"path": str(path)})["path"]

    # Talos and Helm, as thin as the routes
    def talos_apply(self, node: str, config: str, insecure: bool = False) -> dict:
        return self.call("POST", "/talos/apply", json={"node": node, "config": config, "insecure": insecure})

    def talos_bootstrap(self, node: str) -> dict:
        return self.call("POST", "/talos/bootstrap", json={"node": node})

    def talos_read(self, node: str, path: str) -> str:
        return self.call("GET", "/talos/read", params={"node": node, "path": path})["content"]

    def kubeconfig(self) -> dict:
        return self.call("GET", "/talos/kubeconfig")["kubeconfig"]

    def helm_upsert(self, namespace: str, name: str, chart: str, version: str, values: dict | None = None) -> dict:
        return self.call("PUT", f"/helm/releases/{namespace}/{name}",
                         json={"chart": chart, "version": version, "values": values or {}})

    def helm_uninstall(self, namespace: str, name: str) -> dict:
        return self.call("DELETE", f"/helm/releases/{namespace}/{name}")
