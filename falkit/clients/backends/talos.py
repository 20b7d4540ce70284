"""Talos through ``talosctl``: one backend for the live lab and the twin.

:class:`Talos` runs ``talosctl`` (found on ``PATH``) with the private talosconfig. On the twin,
``PATH`` starts with the twin's ``bin`` directory, whose ``talosctl`` is the twin's stand-in
(``falkit.twin.tools.talosctl``): the same command lines, outputs and error texts on both targets.
Errors raise :class:`~falkit.clients.backends.BackendError` with talosctl's own words;
:class:`~falkit.clients.backends.UnreachableError` when the node does not answer; :class:`ForeignCAError`
when a node answers as a configured Talos node that does not trust the talosconfig's CA. Configs
are passed through a 0600 temporary file, never on the command line.

What talosctl says, and how falkit reads it (siderolabs/talos @ v1.11.6, 1e50b9f8):

- **maintenance mode**: a fresh node serves a self-signed certificate, so a client presenting a
  talosconfig fails with ``x509: certificate signed by unknown authority``; with ``--insecure`` the
  maintenance service answers admin APIs such as Version with "API is not implemented in
  maintenance mode" (internal/app/maintenance/server.go, ``assertAdminRole``). A *configured* node
  asked with ``--insecure`` refuses the handshake ("tls: certificate required"): a node of a cluster
  whose secrets falkit does not hold (:class:`ForeignCAError`).
- **bootstrapped**: ``talosctl service etcd`` on a control-plane node shows STATE ``Running``
  once etcd runs; before bootstrap it waits in ``Preparing`` (internal/app/machined/pkg/system/
  services/etcd.go). ``bootstrap`` on a bootstrapped node answers ``AlreadyExists desc = etcd data
  directory is not empty`` (internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go).
- **health**: ``talosctl health --wait-timeout D`` prints ``waiting for <check>: <state>`` lines
  on stderr and fails with DeadlineExceeded when a check does not pass within D
  (cmd/talosctl/cmd/talos/health.go; pkg/cluster/check/default.go): :meth:`Talos.health` returns
  every check it saw. The subprocess limit is D plus a margin, never less than D.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import yaml

from . import BackendError, UnreachableError

#: texts by which a node in maintenance mode (or a node that does not trust the talosconfig)
#: answers a client presenting a talosconfig; see the module docstring.
NOT_TRUSTED = ("x509: certificate signed by unknown authority", "certificate required", "maintenance mode")
MAINTENANCE = "API is not implemented in maintenance mode"
ALREADY_BOOTSTRAPPED = "etcd data directory is not empty"
HEALTH_LINE = re.compile(r"^waiting for (.+?): (.*)$")
HEALTH_MARGIN_S = 60.0


class ForeignCAError(BackendError):
    """The node is configured and does not trust the talosconfig's CA (another cluster's secrets)."""


class Talos:
    """Talos via ``talosctl`` (subprocess). ``argv_*`` build the command lines."""

    def __init__(self, talosconfig_path: str, journal: Any = None, talosctl: str = "talosctl", timeout: float = 120.0):
        self.talosconfig = talosconfig_path
        self.journal = journal
        self.talosctl = talosctl
        self.timeout = timeout

    @contextlib.contextmanager
    def using(self, talosconfig_text: str) -> Iterator[Talos]:
        """Use ``talosconfig_text`` (a talosconfig not saved yet) for the calls inside the block:
        written to a 0600 temporary file, removed afterwards."""
        fd, path = tempfile.mkstemp(prefix="falkit-talosconfig-", suffix=".yaml")
        saved = self.talosconfig
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(talosconfig_text)
            self.talosconfig = path
            yield self
        finally:
            self.talosconfig = saved
            os.unlink(path)

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

    def argv_health(self, node: str | None, wait_timeout_s: float) -> list[str]:
        return self.base(node) + ["health", "--wait-timeout", f"{int(max(wait_timeout_s, 1))}s"]

    def argv_read(self, node: str, path: str) -> list[str]:
        return self.base(node) + ["read", path]

    def argv_version(self, node: str, insecure: bool = False) -> list[str]:
        return self.base(node, insecure) + ["version"] + (["--insecure"] if insecure else ["--short"])

    def argv_get_config(self, node: str) -> list[str]:
        return self.base(node) + ["get", "machineconfig", "-o", "yaml"]

    def argv_service(self, node: str, service: str) -> list[str]:
        return self.base(node) + ["service", service]

    def _exec(self, argv: list[str], what: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        limit = self.timeout if timeout is None else timeout
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=limit, check=False)
        except FileNotFoundError as e:
            raise BackendError(what, f"{self.talosctl} not found: install talosctl matching the cluster's Talos "
                                     "version (on the twin: start it with `falkit twin up`)") from e
        except subprocess.TimeoutExpired as e:
            raise UnreachableError(what, f"talosctl did not finish within {limit:g} s") from e

    def _run(self, argv: list[str], what: str, mutating: bool = False, summary: str = "",
             timeout: float | None = None) -> str:
        p = self._exec(argv, what, timeout)
        if mutating and self.journal is not None:
            self.journal.record("talos", "POST", "/talosctl/" + what.split()[1], p.returncode, summary=summary)
        if p.returncode != 0:
            err = (p.stderr or p.stdout).strip()
            trust = any(t in err for t in NOT_TRUSTED)
            cls = UnreachableError if not trust and ("connection refused" in err or "Unavailable" in err) else BackendError
            raise cls(what, err, p.returncode)
        return p.stdout

    def apply_config(self, node: str, config_yaml: str, insecure: bool) -> dict[str, Any]:
        fd, path = tempfile.mkstemp(prefix="falkit-talos-", suffix=".yaml")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(config_yaml)
            p = self._exec(self.argv_apply(node, path, insecure), f"talosctl apply-config {node}")
            if self.journal is not None:
                self.journal.record("talos", "POST", "/talosctl/apply-config", p.returncode,
                                    summary=f"node={node} insecure={insecure}")
        finally:
            os.unlink(path)
        if p.returncode != 0:
            err = (p.stderr or p.stdout).strip()
            cls = UnreachableError if "connection refused" in err else BackendError
            raise cls(f"talosctl apply-config {node}", err, p.returncode)
        # the mode details ("Applied configuration ...") go to stderr (helpers.PrintApplyResults)
        return {"node": node, "message": (p.stderr or p.stdout).strip() or "applied (maintenance mode: installing)"}

    def bootstrap(self, node: str) -> dict[str, Any]:
        """``talosctl bootstrap``; a cluster that is bootstrapped already is not an error."""
        try:
            self._run(self.argv_bootstrap(node), f"talosctl bootstrap {node}", True, f"node={node}")
        except BackendError as e:
            if ALREADY_BOOTSTRAPPED not in e.message:
                raise
            return {"node": node, "bootstrapped": True, "already": True}
        return {"node": node, "bootstrapped": True}

    def etcd_running(self, node: str) -> bool:
        """Whether etcd runs on the control-plane node ``node`` (``talosctl service etcd``: STATE
        Running), i.e. the cluster is bootstrapped. Raises when the node does not answer."""
        out = self._run(self.argv_service(node, "etcd"), f"talosctl service etcd {node}")
        state = next((line.split(None, 1)[1].strip() for line in out.splitlines()
                      if line.startswith("STATE") and len(line.split(None, 1)) == 2), "")
        return state == "Running"

    def kubeconfig(self, node: str | None = None) -> str:
        if node is None:
            raise BackendError("talosctl kubeconfig", "a control-plane node is needed")
        with tempfile.TemporaryDirectory(prefix="falkit-kc-") as d:
            out = os.path.join(d, "kubeconfig")
            self._run(self.argv_kubeconfig(node, out), f"talosctl kubeconfig {node}")
            with open(out) as fh:
                return fh.read()

    def health(self, node: str | None = None, wait_timeout_s: float = 60.0) -> dict[str, Any]:
        """``talosctl health --wait-timeout``: ``{"ok", "checks": [{"name", "ok", "message"}]}``,
        one entry per check talosctl reported (its last state). The subprocess may run
        ``wait_timeout_s`` plus a margin: never less than talosctl's own wait."""
        what = "talosctl health"
        p = self._exec(self.argv_health(node, wait_timeout_s), what, wait_timeout_s + HEALTH_MARGIN_S)
        checks: dict[str, str] = {}
        for line in (p.stderr or "").splitlines():
            m = HEALTH_LINE.match(line.strip())
            if m:
                checks[m.group(1)] = m.group(2)
        rows = [{"name": n, "ok": msg in ("OK", "SKIP"), "message": msg} for n, msg in checks.items()]
        if p.returncode == 0:
            return {"ok": True, "checks": rows}
        err = (p.stderr or p.stdout).strip().splitlines()
        if not rows:
            return {"ok": False, "checks": [{"name": what, "ok": False, "message": err[-1] if err else "failed"}]}
        if all(r["ok"] for r in rows):  # the wait ended between two checks
            rows.append({"name": what, "ok": False, "message": err[-1] if err else "failed"})
        return {"ok": False, "checks": rows}

    def read(self, node: str, path: str) -> str:
        return self._run(self.argv_read(node, path), f"talosctl read {node} {path}")

    def version(self, node: str) -> dict[str, Any]:
        """``{"node", "talos", "maintenance"}``. A node that refuses the talosconfig is asked again
        with ``--insecure``: the maintenance service's answer means maintenance mode; "certificate
        required" means a configured node of another CA (:class:`ForeignCAError`)."""
        try:
            out = self._run(self.argv_version(node), f"talosctl version {node}")
            maintenance = False
        except BackendError as e:
            if not any(t in e.message for t in NOT_TRUSTED):
                raise
            try:
                out = self._run(self.argv_version(node, insecure=True), f"talosctl version --insecure {node}")
            except BackendError as e2:
                if MAINTENANCE in e2.message:
                    return {"node": node, "talos": "", "maintenance": True}
                if "certificate required" in e2.message:
                    raise ForeignCAError(f"talosctl version {node}", (
                        f"{node} runs a configured Talos whose CA is not the talosconfig's ({e.message}); "
                        "its cluster's secrets are needed")) from e2
                raise
            maintenance = True
        server = out.split("Server:", 1)[-1]
        tag = next((line.split(":", 1)[1].strip() for line in server.splitlines() if line.strip().startswith("Tag:")), "")
        return {"node": node, "talos": tag, "maintenance": maintenance}

    def get_config(self, node: str) -> str:
        out = self._run(self.argv_get_config(node), f"talosctl get machineconfig {node}")
        docs = list(yaml.safe_load_all(out))
        spec = next((d.get("spec") for d in docs if isinstance(d, dict) and "spec" in d), None)
        return spec if isinstance(spec, str) else out
