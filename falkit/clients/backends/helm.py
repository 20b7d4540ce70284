"""The Helm backend: ``helm upgrade --install`` / ``status`` / ``uninstall`` / ``list`` through the
``helm`` CLI, on both targets.

On the live lab ``helm`` is the operator's Helm 3; on the twin it is the twin's stand-in
(``falkit.twin.tools.helm``) that :class:`falkit.clients.target.Target` puts first on PATH. There is no other
path. Values go to helm through a 0600 temporary file (``-f``), never as ``--set`` on the command
line. A release is returned as ``{name, namespace, chart, version, values, revision, status}``;
``get`` returns None when it does not exist.

Chart sources are explicit (issue 13 fault 5): every chart falkit installs comes from the
repository URL in :data:`CHART_REPOSITORIES` (``--repo URL``) or an ``oci://`` reference, always
at a pinned ``--version``. Helm refuses a bare chart name ("non-absolute URLs should be in form of
repo_name/path_to_chart", pkg/downloader/chart_downloader.go) and an ``alias/chart`` needs a
``helm repo add`` the operator may never have run, so neither is ever passed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from typing import Any, Protocol

import yaml

from ...render import mayastorvalues as mv
from . import BackendError, UnreachableError

# Where each chart falkit installs is published (the projects' own `helm repo add` lines; the twin
# keeps the same table from those sources in falkit/twin/lab/charts.py).
CHART_REPOSITORIES = {
    "cilium": "https://helm.cilium.io/",  # docs.cilium.io, "Installation using Helm"
    "metallb": "https://metallb.github.io/metallb",  # metallb.universe.tf/installation
    mv.CHART: mv.CHART_REPO,  # mayastor: openebs/mayastor-extensions README
    "argo-cd": "https://argoproj.github.io/argo-helm",  # argoproj/argo-helm README
}
_CHART_VERSION = re.compile(r"^(?P<chart>.+)-(?P<version>v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?)$")


class HelmBackend(Protocol):
    def get(self, ns: str, name: str) -> dict[str, Any] | None: ...

    def upgrade_install(self, ns: str, name: str, chart: str, version: str, values: dict[str, Any]) -> dict[str, Any]: ...

    def uninstall(self, ns: str, name: str) -> dict[str, Any]: ...

    def list(self) -> list[dict[str, Any]]: ...


def chart_source(chart: str) -> tuple[str, str | None]:
    """``(chart argument, --repo URL or None)`` for a chart falkit installs; BackendError for a chart
    with no explicit source (a bare name not in :data:`CHART_REPOSITORIES`, or a repo alias)."""
    if chart.startswith("oci://"):
        return chart, None
    if chart in CHART_REPOSITORIES:
        return chart, CHART_REPOSITORIES[chart]
    raise BackendError(f"helm chart {chart}", "falkit installs charts only from an explicit repository URL or an "
                       f"oci:// reference; {chart!r} is neither (known: {', '.join(sorted(CHART_REPOSITORIES))})")


class Helm:
    """``helm`` via subprocess; ``argv_*`` build the command lines. ``env`` is the environment the
    tool runs in (the target's: on the twin its PATH starts with the twin's stand-ins)."""

    def __init__(self, kubeconfig_path: str, journal: Any = None, helm: str = "helm", timeout: float = 660.0,
                 env: dict[str, str] | None = None):
        self.kubeconfig = kubeconfig_path
        self.journal = journal
        self.helm = helm
        self.timeout = timeout
        self.env = env

    def base(self) -> list[str]:
        return [self.helm, "--kubeconfig", self.kubeconfig]

    def argv_upgrade_install(self, ns: str, name: str, chart: str, version: str, values_file: str) -> list[str]:
        if not str(version or "").strip():
            raise BackendError(f"helm upgrade {ns}/{name}", f"no chart version for {chart}: falkit installs pinned "
                               f"versions only (spec.versions / the step's chart-version option)")
        ref, repo = chart_source(chart)
        argv = self.base() + ["upgrade", "--install", name, ref]
        if repo is not None:
            argv += ["--repo", repo]
        return argv + ["--version", str(version), "--namespace", ns, "--create-namespace", "-f", values_file,
                       "--wait", "--timeout", "10m"]

    def argv_status(self, ns: str, name: str) -> list[str]:
        return self.base() + ["status", name, "--namespace", ns, "-o", "json"]

    def argv_uninstall(self, ns: str, name: str) -> list[str]:
        return self.base() + ["uninstall", name, "--namespace", ns, "--wait"]

    def argv_list(self) -> list[str]:
        return self.base() + ["list", "--all-namespaces", "-o", "json"]

    def _run(self, argv: list[str], what: str, mutating: bool = False, summary: str = "") -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, check=False, env=self.env)
        except FileNotFoundError as e:
            raise BackendError(what, f"{self.helm} not found on PATH: install Helm 3 (https://helm.sh/docs/intro/install/)") from e
        except subprocess.TimeoutExpired as e:
            raise UnreachableError(what, f"helm did not finish within {self.timeout:g} s") from e
        if mutating and self.journal is not None:
            self.journal.record("helm", "PUT" if "upgrade" in argv else "DELETE", "/helm/releases/" + what.split()[-1],
                                p.returncode, summary=summary)
        if p.returncode != 0:
            err = (p.stderr or p.stdout).strip()
            cls = UnreachableError if "Kubernetes cluster unreachable" in err else BackendError
            raise cls(what, err, p.returncode)
        return p.stdout

    @staticmethod
    def _from_list(item: dict[str, Any]) -> dict[str, Any]:
        m = _CHART_VERSION.match(str(item.get("chart", "")))
        chart, version = (m["chart"], m["version"]) if m else (str(item.get("chart", "")), "")
        return {"name": item.get("name"), "namespace": item.get("namespace"), "chart": chart, "version": version,
                "values": {}, "revision": int(item.get("revision", 0)), "status": item.get("status")}

    def get(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            out = self._run(self.argv_status(ns, name), f"helm status {ns}/{name}")
        except UnreachableError:
            raise
        except BackendError as e:
            if "release: not found" in e.message:  # driver.ErrReleaseNotFound (pkg/storage/driver/driver.go)
                return None
            raise
        rec = json.loads(out)
        meta = (rec.get("chart") or {}).get("metadata") or {}
        return {"name": rec.get("name"), "namespace": rec.get("namespace"), "chart": meta.get("name"),
                "version": meta.get("version"), "values": rec.get("config") or {}, "revision": int(rec.get("version", 0)),
                "status": (rec.get("info") or {}).get("status")}

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
        return [self._from_list(i) for i in json.loads(self._run(self.argv_list(), "helm list") or "[]")]
