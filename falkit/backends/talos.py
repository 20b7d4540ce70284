"""Talos backends: what ``talosctl`` does, for the twin and for the live lab.

:class:`TalosBackend` is the protocol the talos step uses. :class:`TwinTalos` calls the twin's lab
API (``/lab/talos/...``, docs/ARCHITECTURE.md); :class:`LiveTalos` runs ``talosctl`` with the
private talosconfig. Both raise :class:`~falkit.backends.BackendError` with the tool's own words
and :class:`~falkit.backends.UnreachableError` when the node does not answer. Configs are passed to
talosctl through a 0600 temporary file, never on the command line.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from typing import Any, Protocol

import yaml

from . import BackendError, LabApi, UnreachableError


class TalosBackend(Protocol):
    def apply_config(self, node: str, config_yaml: str, insecure: bool) -> dict[str, Any]: ...

    def bootstrap(self, node: str) -> dict[str, Any]: ...

    def kubeconfig(self, node: str | None = None) -> str: ...

    def health(self, node: str | None = None) -> dict[str, Any]: ...

    def read(self, node: str, path: str) -> str: ...

    def version(self, node: str) -> dict[str, Any]: ...

    def get_config(self, node: str) -> str: ...


class TwinTalos:
    """Talos over the twin's lab API."""

    def __init__(self, lab_api_url: str, journal: Any = None, timeout: float = 30.0):
        self.api = LabApi(lab_api_url, journal, "talos", timeout)

    def apply_config(self, node: str, config_yaml: str, insecure: bool) -> dict[str, Any]:
        return self.api.call("POST", "/talos/apply", f"talos apply-config {node}", f"node={node} insecure={insecure}",
                             json={"node": node, "config": config_yaml, "insecure": insecure})

    def bootstrap(self, node: str) -> dict[str, Any]:
        return self.api.call("POST", "/talos/bootstrap", f"talos bootstrap {node}", f"node={node}", json={"node": node})

    def kubeconfig(self, node: str | None = None) -> str:
        kc = self.api.call("GET", "/talos/kubeconfig", "talos kubeconfig")["kubeconfig"]
        return kc if isinstance(kc, str) else yaml.safe_dump(kc, sort_keys=False)

    def health(self, node: str | None = None) -> dict[str, Any]:
        return self.api.call("GET", "/talos/health", "talos health")

    def read(self, node: str, path: str) -> str:
        return self.api.call("GET", "/talos/read", f"talos read {node} {path}", params={"node": node, "path": path})["content"]

    def version(self, node: str) -> dict[str, Any]:
        return self.api.call("GET", "/talos/version", f"talos version {node}", params={"node": node})

    def get_config(self, node: str) -> str:
        return self.api.call("GET", "/talos/config", f"talos get machineconfig {node}", params={"node": node})["config"]


class LiveTalos:
    """Talos via ``talosctl`` (subprocess). ``argv_*`` build the command lines (tested without talosctl)."""

    def __init__(self, talosconfig_path: str, journal: Any = None, talosctl: str = "talosctl", timeout: float = 300.0):
        self.talosconfig = talosconfig_path
        self.journal = journal
        self.talosctl = talosctl
        self.timeout = timeout

    def base(self, node: str | None, insecure: bool = False) -> list[str]:
        argv = [self.talosctl]
        if not insecure:
            argv += ["--talosconfig", self.talosconfig]
        if node:
            argv += ["-n", node, "-e", node]
        return argv

    def argv_apply(self, node: str, path: str, insecure: bool) -> list[str]:
        return self.base(node, insecure) + ["apply-config", "--file", path] + (["--insecure"] if insecure else [])

    def argv_bootstrap(self, node: str) -> list[str]:
        return self.base(node) + ["bootstrap"]

    def argv_kubeconfig(self, node: str, out: str) -> list[str]:
        return self.base(node) + ["kubeconfig", out, "--force"]

    def argv_health(self, node: str | None) -> list[str]:
        return self.base(node) + ["health", "--wait-timeout", "10m"]

    def argv_read(self, node: str, path: str) -> list[str]:
        return self.base(node) + ["read", path]

    def argv_version(self, node: str, insecure: bool = False) -> list[str]:
        return self.base(node, insecure) + ["version"] + (["--insecure"] if insecure else ["--short"])

    def argv_get_config(self, node: str) -> list[str]:
        return self.base(node) + ["get", "machineconfig", "-o", "yaml"]

    def _run(self, argv: list[str], what: str, mutating: bool = False, summary: str = "") -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, check=False)
        except FileNotFoundError as e:
            raise BackendError(what, f"{self.talosctl} not found: install talosctl matching the cluster's Talos version") from e
        except subprocess.TimeoutExpired as e:
            raise UnreachableError(what, f"talosctl did not finish within {self.timeout:g} s") from e
        if mutating and self.journal is not None:
            self.journal.record("talos", "POST", "/talosctl/" + what.split()[1], p.returncode, summary=summary)
        if p.returncode != 0:
            err = (p.stderr or p.stdout).strip()
            cls = UnreachableError if ("connection refused" in err or "Unavailable" in err) else BackendError
            raise cls(what, err, p.returncode)
        return p.stdout

    def apply_config(self, node: str, config_yaml: str, insecure: bool) -> dict[str, Any]:
        fd, path = tempfile.mkstemp(prefix="falkit-talos-", suffix=".yaml")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(config_yaml)
            out = self._run(self.argv_apply(node, path, insecure), f"talosctl apply-config {node}", True,
                            f"node={node} insecure={insecure}")
        finally:
            os.unlink(path)
        return {"node": node, "message": out.strip()}

    def bootstrap(self, node: str) -> dict[str, Any]:
        self._run(self.argv_bootstrap(node), f"talosctl bootstrap {node}", True, f"node={node}")
        return {"node": node, "bootstrapped": True}

    def kubeconfig(self, node: str | None = None) -> str:
        if node is None:
            raise BackendError("talosctl kubeconfig", "a control-plane node is needed")
        with tempfile.TemporaryDirectory(prefix="falkit-kc-") as d:
            out = os.path.join(d, "kubeconfig")
            self._run(self.argv_kubeconfig(node, out), f"talosctl kubeconfig {node}")
            with open(out) as fh:
                return fh.read()

    def health(self, node: str | None = None) -> dict[str, Any]:
        try:
            out = self._run(self.argv_health(node), "talosctl health")
        except BackendError as e:
            return {"ok": False, "checks": [{"name": "talosctl health", "ok": False, "message": e.message}]}
        return {"ok": True, "checks": [{"name": "talosctl health", "ok": True, "message": out.strip()[-200:]}]}

    def read(self, node: str, path: str) -> str:
        return self._run(self.argv_read(node, path), f"talosctl read {node} {path}")

    def version(self, node: str) -> dict[str, Any]:
        try:
            out = self._run(self.argv_version(node), f"talosctl version {node}")
            maintenance = False
        except BackendError as e:
            if "certificate required" not in e.message and "maintenance" not in e.message:
                raise
            out = self._run(self.argv_version(node, insecure=True), f"talosctl version --insecure {node}")
            maintenance = True
        tag = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("Tag:")), "")
        return {"node": node, "talos": tag, "maintenance": maintenance}

    def get_config(self, node: str) -> str:
        out = self._run(self.argv_get_config(node), f"talosctl get machineconfig {node}")
        docs = list(yaml.safe_load_all(out))
        spec = next((d.get("spec") for d in docs if isinstance(d, dict) and "spec" in d), None)
        return spec if isinstance(spec, str) else out
