"""The twin's ``talosctl``: ``python -m falkit.twin.tools.talosctl [flags] <command> ...``.

Accepts the flags falkit uses — global ``--talosconfig``, ``-n/--nodes``, ``-e/--endpoints``;
``version [--insecure] [--short] [--client]``; ``apply-config --file F [--insecure] [--mode M]
[--dry-run]``; ``bootstrap``; ``kubeconfig PATH [--force]``; ``health [--wait-timeout D]``;
``read PATH``; ``get machineconfig -o yaml``; ``service ID`` — and answers as talosctl v1.11 does,
from the twin's Talos model (the lab API's ``/lab/talos/*`` routes, loopback only). The client's
identity is the talosconfig's ``ca``/``crt`` (sent as headers; the lab models apid's TLS
handshake: falkit.twin.lab.talos.handshake). Errors go to stderr with exit status 1, as
``cmd/talosctl/cmd/root.go`` (``Execute``: prints ``err.Error()``) and ``main`` do. Sources, all in
siderolabs/talos @ v1.11.6 (1e50b9f8580855544fe0d6c045339b1b0af1cf02):

- version: cmd/talosctl/cmd/talos/version.go (``Client:``/``Server:``, ``NODE:``, ``Enabled:``),
  pkg/machinery/version/version.go (``versionTemplate``), errors "error getting version from node
  %s: %w";
- apply-config: cmd/talosctl/cmd/talos/apply-config.go ("failed to read configuration from %q:
  %w", "no configuration data read", "error applying new configuration: %s"), mode details on
  stderr (cmd/talosctl/pkg/talos/helpers/mode.go, PrintApplyResults);
- bootstrap: cmd/talosctl/cmd/talos/bootstrap.go ("error executing bootstrap: %w");
- kubeconfig: cmd/talosctl/cmd/talos/kubeconfig.go ("kubeconfig file already exists, use --force
  to overwrite: %q"; a directory gets ``kubeconfig`` appended);
- health: cmd/talosctl/cmd/talos/health.go (``--wait-timeout`` default 20m, server side) and
  internal/app/machined/internal/server/v1alpha1/v1alpha1_cluster.go (``discovered nodes: %q``,
  ``waiting for <check>: <state>`` lines on stderr); a check that does not pass before the
  timeout ends it with the context's DeadlineExceeded;
- read: cmd/talosctl/cmd/talos/read.go ("error reading file: %w");
- get -o yaml: cmd/talosctl/cmd/talos/output/yaml.go (``node:`` then the resource; the machine
  config's spec as a string);
- service: cmd/talosctl/cmd/talos/service.go, pkg/machinery/formatters/formatters.go
  (RenderServicesInfo), "error listing services: %w";
- no node: cmd/talosctl/pkg/talos/global/client.go ("nodes are not set for the command: ...");
  an empty talosconfig: pkg/machinery/client/client.go ("talos config file is empty").

A lab wait (health) runs on the twin's clock: ``--wait-timeout`` times the twin's time factor
(0 in tests: one evaluation after a short settle).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml

from . import lab_api, lab_headers

NODES_NOT_SET = ("nodes are not set for the command: please use `--nodes` flag or configuration file to set the "
                 "nodes to run the command against")
SETTLE_S = 1.0  # real seconds a health wait polls on a twin with time factor 0


class Fail(Exception):
    """talosctl's error: printed to stderr, exit status 1."""


def _duration(text: str) -> float:
    """A Go duration (``10m``, ``90s``, ``1m30s``, ``1h``) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise Fail(f'invalid argument "{text}" for "--wait-timeout" flag: time: invalid duration "{text}"')
    mult = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(a) * mult[b] for a, b in parts)


def parse(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Flags (anywhere, as cobra allows) and the positional words."""
    flags: dict[str, Any] = {}
    words: list[str] = []
    valued = {"--talosconfig": "talosconfig", "-n": "nodes", "--nodes": "nodes", "-e": "endpoints",
              "--endpoints": "endpoints", "--file": "file", "--mode": "mode", "-m": "mode",
              "--wait-timeout": "wait_timeout", "-o": "output", "--output": "output", "--context": "context"}
    boolean = {"--insecure": "insecure", "-i": "insecure", "--dry-run": "dry_run", "--short": "short",
               "--client": "client", "--force": "force", "--server": "server", "--merge": "merge"}
    i = 0
    while i < len(argv):
        a = argv[i]
        key, _, inline = a.partition("=")
        if key in valued:
            if inline:
                flags[valued[key]] = inline
            else:
                if i + 1 >= len(argv):
                    raise Fail(f"flag needs an argument: {a}")
                flags[valued[key]] = argv[i + 1]
                i += 1
        elif key in boolean:
            flags[boolean[key]] = inline.lower() not in ("false", "0") if inline else True
        elif a == "-f":  # --file for apply-config, --force for kubeconfig
            if words and words[0] == "kubeconfig":
                flags["force"] = True
            else:
                flags["file"] = argv[i + 1]
                i += 1
        elif a.startswith("-"):
            raise Fail(f"unknown flag: {a}")
        else:
            words.append(a)
        i += 1
    return flags, words


class Client:
    """One talosctl invocation against the twin."""

    def __init__(self, flags: dict[str, Any]):
        self.flags = flags
        self.base = lab_api()
        self.insecure = bool(flags.get("insecure"))
        self.context: dict[str, Any] = {}
        if not self.insecure:
            self.context = self._talosconfig(flags.get("talosconfig") or os.environ.get("TALOSCONFIG")
                                             or str(Path.home() / ".talos" / "config"))
        nodes = [n for n in str(flags.get("nodes") or "").split(",") if n] or list(self.context.get("nodes") or [])
        self.node = nodes[0] if nodes else None

    @staticmethod
    def _talosconfig(path: str) -> dict[str, Any]:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            data = {}
        except (OSError, yaml.YAMLError) as e:
            raise Fail(f"failed to parse config: {e}") from None
        contexts = data.get("contexts") or {}
        name = data.get("context") or ""
        if name not in contexts:
            if not name and not contexts:
                raise Fail("talos config file is empty")
            raise Fail(f'default context "{name}" not found in config')
        return contexts[name]

    def need_node(self) -> str:
        if not self.node:
            raise Fail(NODES_NOT_SET)
        return self.node

    def headers(self) -> dict[str, str]:
        if self.insecure:
            return {**lab_headers(), "X-Talos-Client": "insecure"}
        return {**lab_headers(), "X-Talos-Client": "talosconfig", "X-Talos-CA": str(self.context.get("ca") or ""),
                "X-Talos-Crt": str(self.context.get("crt") or "")}

    def call(self, method: str, path: str, prefix: str = "", **kw: Any) -> Any:
        if self.base is None:
            node = self.node or "127.0.0.1"
            raise Fail(f'{prefix}rpc error: code = Unavailable desc = connection error: desc = "transport: Error while '
                       f'dialing: dial tcp {node}:50000: connect: connection refused"')
        try:
            status, text = _http(method, self.base + path, self.headers(), kw.get("params"), kw.get("json"))
        except OSError as e:  # http.client's errors are OSErrors (refused, reset, timeout) or HTTPException
            raise Fail(f"{prefix}rpc error: code = Unavailable desc = connection error: desc = \"{e}\"") from None
        try:
            body = json.loads(text)
        except ValueError:
            body = {"error": text}
        if status >= 400:
            raise Fail(prefix + str(body.get("error") if isinstance(body, dict) else body))
        return body


def _http(method: str, url: str, headers: dict[str, str], params: dict[str, Any] | None = None,
          payload: Any = None, timeout: float = 60) -> tuple[int, str]:
    """One request to the lab API on loopback with the standard library's ``http.client``: a
    stand-in is one process per command line (30-talos starts ~26), and importing ``requests``
    was ~60 % of its start-up CPU (issue 17). No proxy from the environment (loopback only)."""
    u = urlsplit(url)
    target = u.path + ("?" + urlencode(params) if params else "")
    body = None
    if payload is not None:
        body = json.dumps(payload).encode()
        headers = {**headers, "Content-Type": "application/json"}
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    except http.client.HTTPException as e:
        raise OSError(str(e) or type(e).__name__) from None
    finally:
        conn.close()


# --------------------------------------------------------------------------------- commands

VERSION_TEMPLATE = "\tTag:         {tag}\n\tSHA:         {sha}\n\tBuilt:       \n\tGo version:  go1.24.11\n\tOS/Arch:     {os}/amd64\n"


def _tag() -> str:
    return "v" + (os.environ.get("FALKIT_TWIN_TALOS_VERSION") or "1.11.6")


def cmd_version(c: Client) -> None:
    out = ["Client:"]
    if c.flags.get("short"):
        out.append(f"Talos {_tag()}")
    else:
        out.append(VERSION_TEMPLATE.format(tag=_tag(), sha="twin", os="linux").rstrip("\n"))
    if c.flags.get("client"):
        print("\n".join(out))
        return
    out.append("Server:")
    print("\n".join(out))
    node = c.need_node()
    v = c.call("GET", "/talos/version", f"error getting version from node {node}: ", params={"node": node})
    print(f"\tNODE:        {node}")
    print(VERSION_TEMPLATE.format(tag=v.get("talos", _tag()), sha="twin", os="linux"), end="")
    print("\tEnabled:     RBAC")


def cmd_apply(c: Client) -> None:
    path = c.flags.get("file")
    if not path:
        raise Fail("no filename supplied for configuration")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise Fail(f'failed to read configuration from "{path}": {e}') from None
    if not data:
        raise Fail("no configuration data read")
    mode = c.flags.get("mode") or "auto"
    if mode not in ("auto", "reboot", "no-reboot", "staged", "try", "interactive"):
        raise Fail(f'invalid argument "{mode}" for "-m, --mode" flag: possible options are: '
                   "auto, interactive, no-reboot, reboot, staged, try")
    node = c.need_node()
    res = c.call("POST", "/talos/apply", "error applying new configuration: ",
                 json={"node": node, "config": data.decode(), "insecure": c.insecure,
                       "dry_run": bool(c.flags.get("dry_run")), "mode": mode})
    msg = res.get("message") or ""
    if msg and (res.get("dry_run") or not res.get("maintenance_install")):
        print(msg, file=sys.stderr)


def cmd_bootstrap(c: Client) -> None:
    node = c.need_node()
    c.call("POST", "/talos/bootstrap", "error executing bootstrap: ", json={"node": node})


def cmd_kubeconfig(c: Client, words: list[str]) -> None:
    node = c.need_node()
    if len(words) < 2:
        raise Fail("the twin's talosctl writes the kubeconfig only to an explicit path (talosctl kubeconfig PATH)")
    target = Path(words[1])
    if target.is_dir():
        target = target / "kubeconfig"
    if target.exists() and not c.flags.get("force"):
        raise Fail(f'kubeconfig file already exists, use --force to overwrite: "{target}"')
    kc = c.call("GET", "/talos/kubeconfig", "", params={"node": node})["kubeconfig"]
    text = kc if isinstance(kc, str) else yaml.safe_dump(kc, sort_keys=False)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def cmd_health(c: Client) -> int:
    node = c.need_node()
    wait = _duration(str(c.flags.get("wait_timeout") or "20m"))
    started = time.monotonic()
    h = c.call("GET", "/talos/health", "", params={"node": node})
    deadline = started + max(SETTLE_S, wait * float(h.get("time_factor") or 0.0))
    while not h.get("ok") and time.monotonic() < deadline:
        time.sleep(0.2)
        h = c.call("GET", "/talos/health", "", params={"node": node})
    nodes = " ".join(f'"{n}"' for n in h.get("nodes") or [])
    print(f"discovered nodes: [{nodes}]", file=sys.stderr)
    for chk in h.get("checks") or []:
        print(f"waiting for {chk['name']}: {chk['message']}", file=sys.stderr)
    if not h.get("ok"):
        raise Fail("rpc error: code = DeadlineExceeded desc = context deadline exceeded")
    return 0


def cmd_read(c: Client, words: list[str]) -> None:
    if len(words) != 2:
        raise Fail(f'accepts 1 arg(s), received {len(words) - 1}')
    node = c.need_node()
    body = c.call("GET", "/talos/read", "error reading file: ", params={"node": node, "path": words[1]})
    sys.stdout.write(body["content"])


def cmd_get(c: Client, words: list[str]) -> None:
    if len(words) < 2 or words[1].lower() not in ("machineconfig", "machineconfigs", "mc"):
        raise Fail("the twin's talosctl answers `get machineconfig` only")
    if (c.flags.get("output") or "table") != "yaml":
        raise Fail("the twin's talosctl answers `get machineconfig -o yaml` only")
    node = c.need_node()
    body = c.call("GET", "/talos/config", "", params={"node": node})
    spec = "".join("    " + line + "\n" for line in body["config"].splitlines())
    print(f"node: {node}\nmetadata:\n    namespace: config\n    type: MachineConfigs.config.talos.dev\n"
          f"    id: v1alpha1\n    version: 1\n    owner:\n    phase: running\nspec: |\n{spec}", end="")


def cmd_service(c: Client, words: list[str]) -> None:
    node = c.need_node()
    if len(words) < 2:
        raise Fail("the twin's talosctl answers `service ID` only")
    s = c.call("GET", "/talos/service", "error listing services: ", params={"node": node, "id": words[1]})
    rows = [("NODE", s["node"]), ("ID", s["id"]), ("STATE", s["state"]), ("HEALTH", s["health"]),
            ("EVENTS", f"[{s['state']}]: {s['event']} (0s ago)")]
    width = max(len(k) for k, _ in rows) + 3  # tabwriter padding 3
    for k, v in rows:
        print(f"{k:<{width}}{v}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        flags, words = parse(argv)
        if not words:
            raise Fail('the twin\'s talosctl needs a command (version, apply-config, bootstrap, kubeconfig, health, '
                       'read, get, service)')
        cmd = words[0]
        if cmd == "version" and flags.get("client"):
            flags["insecure"] = True  # no server: the talosconfig is not read
        c = Client(flags)
        if cmd == "version":
            cmd_version(c)
        elif cmd in ("apply-config", "apply"):
            cmd_apply(c)
        elif cmd == "bootstrap":
            cmd_bootstrap(c)
        elif cmd == "kubeconfig":
            cmd_kubeconfig(c, words)
        elif cmd == "health":
            cmd_health(c)
        elif cmd == "read":
            cmd_read(c, words)
        elif cmd == "get":
            cmd_get(c, words)
        elif cmd == "service":
            cmd_service(c, words)
        else:
            raise Fail(f'unknown command "{cmd}" for "talosctl"')
    except Fail as e:
        sys.stdout.flush()
        print(str(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

