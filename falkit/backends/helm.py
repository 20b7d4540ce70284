"""Helm backends: ``helm upgrade --install`` / ``get values`` / ``uninstall`` / ``list``.

:class:`HelmBackend` is the protocol steps use; :class:`TwinHelm` calls the twin's lab API
(``/lab/helm/releases``), :class:`LiveHelm` runs the ``helm`` CLI with the lab's kubeconfig. Values
go to helm through a 0600 temporary file (``-f``), never as ``--set`` on the command line. A release
is returned as ``{name, namespace, chart, version, values, revision, status}``; ``get`` returns None
when it does not exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from typing import Any, Protocol

import yaml

from . import BackendError, LabApi, UnreachableError

# Where each chart comes from on the live lab (repo URL, chart reference).
CHART_REPOS = {
    "cilium/cilium": ("https://helm.cilium.io/", "cilium"),
    "metallb/metallb": ("https://metallb.github.io/metallb", "metallb"),
}


class HelmBackend(Protocol):
    def get(self, ns: str, name: str) -> dict[str, Any] | None: ...

    def upgrade_install(self, ns: str, name: str, chart: str, version: str, values: dict[str, Any]) -> dict[str, Any]: ...

    def uninstall(self, ns: str, name: str) -> dict[str, Any]: ...

    def list(self) -> list[dict[str, Any]]: ...


class TwinHelm:
    def __init__(self, lab_api_url: str, journal: Any = None, timeout: float = 60.0):
        self.api = LabApi(lab_api_url, journal, "helm", timeout)

    def get(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return self.api.call("GET", f"/helm/releases/{ns}/{name}", f"helm get {ns}/{name}")
        except BackendError as e:
            if e.status == 404:
                return None
            raise

    def upgrade_install(self, ns: str, name: str, chart: str, version: str, values: dict[str, Any]) -> dict[str, Any]:
        return self.api.call("PUT", f"/helm/releases/{ns}/{name}", f"helm upgrade --install {ns}/{name}",
                             f"chart={chart} version={version}", json={"chart": chart, "version": version, "values": values})

    def uninstall(self, ns: str, name: str) -> dict[str, Any]:
        return self.api.call("DELETE", f"/helm/releases/{ns}/{name}", f"helm uninstall {ns}/{name}")

    def list(self) -> list[dict[str, Any]]:
        return self.api.call("GET", "/helm/releases", "helm list")["releases"]


class LiveHelm:
    """``helm`` via subprocess; ``argv_*`` build the command lines (tested without helm)."""

    def __init__(self, kubeconfig_path: str, journal: Any = None, helm: str = "helm", timeout: float = 600.0):
        self.kubeconfig = kubeconfig_path
        self.journal = journal
        self.helm = helm
        self.timeout = timeout

    def base(self) -> list[str]:
        return [self.helm, "--kubeconfig", self.kubeconfig]

    def argv_upgrade_install(self, ns: str, name: str, chart: str, version: str, values_file: str) -> list[str]:
        repo, ref = CHART_REPOS.get(chart, (None, chart))
        argv = self.base() + ["upgrade", "--install", name, ref]
        if repo is not None:
            argv += ["--repo", repo]
        return argv + ["--version", version, "--namespace", ns, "--create-namespace", "-f", values_file,
                       "--wait", "--timeout", "10m"]

    def argv_get(self, ns: str, name: str) -> list[str]:
        return self.base() + ["list", "--namespace", ns, "--filter", f"^{name}$", "-o", "json"]

    def argv_get_values(self, ns: str, name: str) -> list[str]:
        return self.base() + ["get", "values", name, "--namespace", ns, "-o", "json"]

    def argv_uninstall(self, ns: str, name: str) -> list[str]:
        return self.base() + ["uninstall", name, "--namespace", ns, "--wait"]

    def argv_list(self) -> list[str]:
        return self.base() + ["list", "--all-namespaces", "-o", "json"]

    def _run(self, argv: list[str], what: str, mutating: bool = False, summary: str = "") -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, check=False)
        except FileNotFoundError as e:
            raise BackendError(what, f"{self.helm} not found: install helm 3") from e
        except subprocess.TimeoutExpired as e:
            raise UnreachableError(what, f"helm did not finish within {self.timeout:g} s") from e
        if mutating and self.journal is not None:
            self.journal.record("helm", "PUT" if "upgrade" in argv else "DELETE", "/helm/" + what.split()[1], p.returncode,
                                summary=summary)
        if p.returncode != 0:
            raise BackendError(what, (p.stderr or p.stdout).strip(), p.returncode)
        return p.stdout

    @staticmethod
    def _release(item: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        chart, _, version = str(item.get("chart", "")).rpartition("-")
        return {"name": item.get("name"), "namespace": item.get("namespace"), "chart": chart, "version": version,
                "values": values, "revision": int(item.get("revision", 0)), "status": item.get("status")}

    def get(self, ns: str, name: str) -> dict[str, Any] | None:
        items = json.loads(self._run(self.argv_get(ns, name), f"helm list {ns}/{name}") or "[]")
        if not items:
            return None
        values = json.loads(self._run(self.argv_get_values(ns, name), f"helm get values {ns}/{name}") or "null") or {}
        return self._release(items[0], values)

    def upgrade_install(self, ns: str, name: str, chart: str, version: str, values: dict[str, Any]) -> dict[str, Any]:
        fd, path = tempfile.mkstemp(prefix="falkit-values-", suffix=".yaml")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                yaml.safe_dump(values, fh, sort_keys=False)
            self._run(self.argv_upgrade_install(ns, name, chart, version, path), f"helm upgrade {ns}/{name}", True,
                      f"chart={chart} version={version}")
        finally:
            os.unlink(path)
        return self.get(ns, name) or {}

    def uninstall(self, ns: str, name: str) -> dict[str, Any]:
        self._run(self.argv_uninstall(ns, name), f"helm uninstall {ns}/{name}", True)
        return {"name": name, "namespace": ns, "uninstalled": True}

    def list(self) -> list[dict[str, Any]]:
        return [self._release(i, {}) for i in json.loads(self._run(self.argv_list(), "helm list") or "[]")]
