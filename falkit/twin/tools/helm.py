"""The twin's ``helm`` stand-in: ``python -m falkit.twin.tools.helm ARGS`` (on PATH as ``helm`` through
the wrapper the twin supervisor writes in ``$FALKIT_STATE_DIR/twin/bin/``).

It takes the command lines falkit runs and answers as Helm 3 does, storing releases in the twin's
lab (``/lab/helm/releases``, loopback only). The lab API is found through ``$FALKIT_TWIN_DIR``
(``connection.json``), which the wrapper sets.

Commands and flags (pflag style: flags anywhere, ``--flag value`` or ``--flag=value``):

- ``upgrade --install NAME CHART [--repo URL] [--version V] [-n NS] [--create-namespace]
  [-f FILE]... [--wait] [--timeout DUR] [--atomic]``;
- ``status NAME [-n NS] [-o json|yaml|table]``, ``get values NAME [-n NS] [-o json|yaml]``;
- ``list [-n NS | -A] [--filter REGEX] [-o json|yaml|table]``, ``uninstall NAME [-n NS] [--wait]``;
- ``version --short``; global ``--kubeconfig``, ``--kube-context``, ``--debug``.

Everything else is refused as pflag refuses it (``unknown flag: --x``). Errors go to stderr as
``Error: <text>`` with exit status 1 (cobra's ``Execute`` error and ``os.Exit(1)`` in
``cmd/helm/helm.go``). Upstream texts, from github.com/helm/helm tag v3.21.4 (commit
813176c51bb5c181dbbd7901298ddcc104cd3417; the same texts at main e9b85e4de16a, Helm 4):

- a bare chart name without ``--repo`` that is no local path:
  ``non-absolute URLs should be in form of repo_name/path_to_chart, got: NAME``
  (pkg/downloader/chart_downloader.go, ``ResolveChartVersion``);
- ``ALIAS/CHART`` with an alias missing from repositories.yaml: ``repo ALIAS not found``
  (pkg/downloader/chart_downloader.go, ``pickChartRepositoryConfigByName``); the repositories file
  is ``$HELM_REPOSITORY_CONFIG`` or ``$HELM_CONFIG_HOME``/``$XDG_CONFIG_HOME``/``~/.config`` +
  ``helm/repositories.yaml`` (pkg/helmpath/lazypath.go);
- ``--repo URL`` whose index lacks the chart: ``chart "NAME" version "V" not found in URL
  repository`` (pkg/repo/chartrepo.go ``FindChartInAuthAndTLSAndPassRepoURL`` + ``ChartNotFoundError``);
  a URL the twin does not serve: ``looks like "URL" is not a valid chart repository or cannot be
  reached`` (same file) — the twin never opens a non-loopback connection, it knows the
  repositories in ``falkit.twin.tools.chartrepos.REPOSITORIES``;
- a missing release: ``release: not found`` (pkg/storage/driver/driver.go ``ErrReleaseNotFound``),
  ``uninstall: Release not loaded: NAME: release: not found`` (pkg/action/uninstall.go);
- install/upgrade failures are wrapped ``INSTALLATION FAILED: `` / ``UPGRADE FAILED: ``
  (cmd/helm/install.go, cmd/helm/upgrade.go); a missing namespace without ``--create-namespace``:
  ``create: failed to create: namespaces "NS" not found`` (the API server's NotFound, as Helm
  passes it on);
- the cluster is reached through the kubeconfig (``--kubeconfig``, else ``$KUBECONFIG``, else
  ``~/.kube/config``): when it does not answer, ``Kubernetes cluster unreachable: ...``
  (pkg/kube/client.go ``IsReachable``). The stand-in only connects to loopback servers.

Output: ``-o json`` is Go's ``json.Encoder`` (compact, one trailing newline); ``list`` elements are
``{name, namespace, revision (string), updated, status, chart: NAME-VERSION, app_version}``
(cmd/helm/list.go ``releaseElement``); ``status -o json`` the release record's fields
``name, info{first_deployed, last_deployed, deleted, description, status}, chart{metadata}, config,
version, namespace`` (pkg/release/release.go, info.go — the chart's templates and default values are
not modelled). Upgrade prints ``Release "NAME" does not exist. Installing it now.`` /
``Release "NAME" has been upgraded. Happy Helming!`` then the status table (cmd/helm/upgrade.go,
status.go). Not modelled: ``--wait`` returns once the lab has applied the release's objects (the
twin's controllers then make the pods; falkit checks readiness itself afterwards); chart versions
are not looked up in an index (any version the step pins is served).
"""

from __future__ import annotations

import atexit
import base64
import datetime as _dt
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from falkit.twin.tools.chartrepos import OCI_CHARTS, REPOSITORIES, chart_key, latest_version, repository

VALUE_FLAGS = {"--kubeconfig", "--kube-context", "--namespace", "--version", "--values", "--timeout", "--repo",
               "--output", "--filter", "--description"}
BOOL_FLAGS = {"--install", "--create-namespace", "--wait", "--all-namespaces", "--debug", "--atomic",
              "--wait-for-jobs", "--short", "--all", "--reset-values", "--reuse-values", "--cleanup-on-fail"}
ALIASES = {"-n": "--namespace", "-f": "--values", "-o": "--output", "-A": "--all-namespaces", "-i": "--install",
           "-a": "--all"}
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$|^0$")
# chartutil.ValidateReleaseName (pkg/chartutil/validate_name.go): DNS-1123 subdomain, at most 53.
_RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class HelmFailure(Exception):
    """Printed as ``Error: <text>``; exit status 1."""


# ----------------------------------------------------------------------------------- arguments

def parse(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """``(positionals, flags)``; repeated ``--values`` accumulate. Unknown flags are refused."""
    pos: list[str] = []
    flags: dict[str, Any] = {"--values": []}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            pos.extend(argv[i + 1:])
            break
        if a.startswith("-") and a != "-":
            name, eq, val = a.partition("=")
            name = ALIASES.get(name, name)
            if name in VALUE_FLAGS:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise HelmFailure(f"flag needs an argument: {a}")
                    val = argv[i]
                if name == "--values":
                    flags["--values"].append(val)
                else:
                    flags[name] = val
            elif name in BOOL_FLAGS:
                flags[name] = val.lower() != "false" if eq else True
            elif a.startswith("--"):
                raise HelmFailure(f"unknown flag: {name}")  # pflag's wording (flag.go failf)
            else:
                raise HelmFailure(f"unknown shorthand flag: '{a[1:2]}' in {a}")
        else:
            pos.append(a)
        i += 1
    return pos, flags


def _go_json(obj: Any) -> str:
    """Go's ``json.Encoder.Encode``: compact, HTML characters escaped, one newline."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n"


def _go_time(iso: str | None) -> str:
    """A lab timestamp (ISO 8601) as Go's ``time.Time.String()``."""
    if not iso:
        return "-"
    t = _dt.datetime.fromisoformat(iso).astimezone(_dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC")


def _rfc3339(iso: str | None) -> str:
    """Go's ``time.Time`` JSON form (RFC 3339; the zero time when unset)."""
    if not iso:
        return "0001-01-01T00:00:00Z"
    return _dt.datetime.fromisoformat(iso).astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ansic(iso: str | None) -> str:
    t = _dt.datetime.fromisoformat(iso).astimezone(_dt.UTC) if iso else _dt.datetime.now(_dt.UTC)
    return t.strftime("%a %b %e %H:%M:%S %Y")


# ---------------------------------------------------------------------------------- the twin

def _twin_dir() -> Path:
    d = os.environ.get("FALKIT_TWIN_DIR")
    if not d:
        raise HelmFailure("the twin's helm stand-in needs FALKIT_TWIN_DIR (set by the wrapper in the twin's bin/)")
    return Path(d)


class LabError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


class _Lab:
    """The lab API over loopback (``requests``, no proxies from the environment)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        import requests  # noqa: PLC0415 - the helm stand-in on PATH starts per call: requests/credentials only on the calls that use them

        host = urlsplit(url).hostname or ""
        if not url.startswith("http://") or not (host.startswith("127.") or host == "localhost"):
            raise HelmFailure(f"the twin's lab API must be a loopback http URL, got {url!r}")
        url = url.rstrip("/")
        self.url = url if url.endswith("/lab") else url + "/lab"
        self.session = requests.Session()
        self.session.trust_env = False
        if token:  # the lab-token file's (0600), named by the connection file: never on a command line
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests  # noqa: PLC0415 - the helm stand-in on PATH starts per call: requests/credentials only on the calls that use them

        try:
            r = self.session.request(method, self.url + path, timeout=600, **kwargs)
        except requests.RequestException as e:
            raise HelmFailure(f"Kubernetes cluster unreachable: the twin's lab API did not answer: {e}") from e
        try:
            body = r.json()
        except ValueError:
            body = r.text
        if not r.ok:
            raise LabError(r.status_code, body)
        return body


def _lab() -> _Lab:
    root = _twin_dir()
    from falkit.twin import credentials  # noqa: PLC0415 - the helm stand-in on PATH starts per call: requests/credentials only on the calls that use them

    for name in ("connection.json", "lab.json"):
        try:
            conn = json.loads((root / name).read_text())
        except (OSError, ValueError):
            continue
        if conn.get("lab_api"):
            return _Lab(conn["lab_api"], credentials.read_token(conn.get("lab_token_file")))
    raise HelmFailure(f"Kubernetes cluster unreachable: the twin in {root} is not up")


def _kube_server(flags: dict[str, Any]) -> str:
    """The server of the kubeconfig's current context (as client-go's loading rules pick it)."""
    return _kube_target(flags)[0]


def _ca_file(cluster: dict[str, Any]) -> str | bool:
    """What requests verifies the server with: the cluster's ``certificate-authority`` file, its
    ``certificate-authority-data`` (written to a private temporary file), else the system CAs."""

    if cluster.get("insecure-skip-tls-verify"):
        return False
    if cluster.get("certificate-authority"):
        return str(cluster["certificate-authority"])
    if cluster.get("certificate-authority-data"):
        fd, path = tempfile.mkstemp(prefix="falkit-helm-ca-", suffix=".crt")  # 0600
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64decode(cluster["certificate-authority-data"]))
        atexit.register(lambda: os.path.exists(path) and os.unlink(path))
        return path
    return True


def _kube_target(flags: dict[str, Any]) -> tuple[str, dict[str, str], str | bool]:
    """The server of the kubeconfig's current context, the headers its user's credentials give (a
    bearer ``token`` or ``tokenFile``; like client-go, only over TLS: clientcmd merges the user's
    auth info only when the transport is TLS) and what the server's certificate is verified with."""
    path = flags.get("--kubeconfig") or (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] \
        or str(Path.home() / ".kube" / "config")
    try:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise HelmFailure(f"Kubernetes cluster unreachable: stat {path}: no such file or directory") from e
    ctx_name = flags.get("--kube-context") or cfg.get("current-context")
    ctx = next((c.get("context") or {} for c in cfg.get("contexts") or [] if c.get("name") == ctx_name), None)
    if ctx is None:
        raise HelmFailure(f"Kubernetes cluster unreachable: context \"{ctx_name}\" does not exist")
    cluster = next((c.get("cluster") or {} for c in cfg.get("clusters") or [] if c.get("name") == ctx.get("cluster")), {})
    server = cluster.get("server") or ""
    if not server:
        raise HelmFailure("Kubernetes cluster unreachable: invalid configuration: no configuration has been provided")
    user = next((u.get("user") or {} for u in cfg.get("users") or [] if u.get("name") == ctx.get("user")), {})
    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            token = Path(user["tokenFile"]).read_text().strip()
        except OSError:
            token = None
    tls = server.startswith("https://")
    return server, ({"Authorization": f"Bearer {token}"} if token and tls else {}), (_ca_file(cluster) if tls else True)


def _check_cluster(flags: dict[str, Any]) -> str:
    """``IsReachable``: GET /version on the kubeconfig's server (loopback only). Returns the server."""
    import requests  # noqa: PLC0415 - the helm stand-in on PATH starts per call: requests/credentials only on the calls that use them

    server, headers, verify = _kube_target(flags)
    host = urlsplit(server).hostname or ""
    if not (host.startswith("127.") or host == "localhost"):
        # The real helm would dial it; the twin never leaves loopback.
        raise HelmFailure(f"Kubernetes cluster unreachable: Get \"{server.rstrip('/')}/version\": the twin's helm "
                          f"stand-in reaches loopback servers only")
    try:
        r = requests.get(server.rstrip("/") + "/version", timeout=10, verify=verify, headers=headers)
        if r.status_code == 401:  # client-go decodes the apiserver's Status: its message is "Unauthorized"
            raise HelmFailure("Kubernetes cluster unreachable: Unauthorized")
        r.raise_for_status()
    except requests.RequestException as e:
        raise HelmFailure(f"Kubernetes cluster unreachable: Get \"{server.rstrip('/')}/version\": {e}") from e
    return server


def _namespace_exists(server: str, ns: str, flags: dict[str, Any] | None = None) -> bool:
    import requests  # noqa: PLC0415 - the helm stand-in on PATH starts per call: requests/credentials only on the calls that use them

    _server, headers, verify = _kube_target(flags) if flags is not None else (server, {}, False)
    r = requests.get(f"{server.rstrip('/')}/api/v1/namespaces/{ns}", timeout=10, verify=verify, headers=headers)
    return r.status_code == 200


def _release(lab: _Lab, ns: str, name: str) -> dict | None:
    try:
        return lab.call("GET", f"/helm/releases/{ns}/{name}")
    except LabError as e:
        if e.status == 404:
            return None
        raise HelmFailure(_lab_message(e)) from e


def _lab_message(e: Any) -> str:
    body = getattr(e, "body", None)
    msg = body.get("error") if isinstance(body, dict) else str(body or e)
    return str(msg).removeprefix("Error: ")


# ------------------------------------------------------------------------------ chart sources

def _repositories_file() -> Path:
    if os.environ.get("HELM_REPOSITORY_CONFIG"):
        return Path(os.environ["HELM_REPOSITORY_CONFIG"])
    base = os.environ.get("HELM_CONFIG_HOME")
    if base:
        return Path(base) / "repositories.yaml"
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "helm" / "repositories.yaml"


def resolve_chart(chart: str, repo: str | None, version: str | None) -> str:
    """The chart reference as the twin stores it (``URL/NAME`` or the ``oci://`` reference), or
    :class:`HelmFailure` with Helm's words (see the module docstring)."""

    chart = chart.strip()
    want = f"chart \"{chart}\"" + (f" version \"{version}\"" if version else "")
    if chart.startswith("oci://"):
        if repo:
            raise HelmFailure(f"unable to lookup chart \"{chart}\": --repo cannot be used with an oci:// reference")
        if chart.rstrip("/") not in OCI_CHARTS:
            # oras-go's "not found" for a reference the registry does not have (text not confirmed
            # against a live registry).
            raise HelmFailure(f"{chart.removeprefix('oci://')}:{version or 'latest'}: not found")
        return chart.rstrip("/")
    if repo:
        charts = repository(repo)
        if charts is None:
            raise HelmFailure(f"looks like \"{repo}\" is not a valid chart repository or cannot be reached: "
                              f"the twin serves only {', '.join(sorted(REPOSITORIES))}")
        if chart not in charts:
            raise HelmFailure(f"{want} not found in {repo} repository")
        return f"{repo.rstrip('/')}/{chart}"
    if chart.startswith(("/", ".")) or Path(chart).exists():
        raise HelmFailure(f"path \"{chart}\" not found" if not Path(chart).exists()
                          else f"the twin's helm stand-in installs no local chart directories ({chart})")
    parts = chart.split("/", 1)
    if len(parts) < 2:
        raise HelmFailure(f"non-absolute URLs should be in form of repo_name/path_to_chart, got: {chart}")
    alias, name = parts
    try:
        repos = (yaml.safe_load(_repositories_file().read_text()) or {}).get("repositories") or []
    except OSError:
        repos = []
    entry = next((r for r in repos if r.get("name") == alias), None)
    if entry is None:
        raise HelmFailure(f"repo {alias} not found")
    return resolve_chart(name, entry.get("url"), version)


# --------------------------------------------------------------------------------- commands

def _status_table(rel: dict) -> str:
    return (f"NAME: {rel['name']}\nLAST DEPLOYED: {_ansic(rel.get('updated'))}\nNAMESPACE: {rel['namespace']}\n"
            f"STATUS: {rel['status']}\nREVISION: {rel['revision']}\nTEST SUITE: None\n")


def _chart_name(rel: dict) -> str:
    return chart_key(rel["chart"])


def _record(rel: dict) -> dict:
    """The release record ``helm status -o json`` prints (pkg/release/release.go)."""
    name = _chart_name(rel)
    info = {"first_deployed": _rfc3339(rel.get("updated")), "last_deployed": _rfc3339(rel.get("updated")),
            "deleted": _rfc3339(None),
            "description": "Install complete" if rel["revision"] == 1 else "Upgrade complete",
            "status": rel["status"]}
    out: dict[str, Any] = {"name": rel["name"], "info": info,
                           "chart": {"metadata": {"name": name, "version": rel["version"], "apiVersion": "v2"}}}
    if rel.get("values"):
        out["config"] = rel["values"]
    out["version"] = rel["revision"]
    out["namespace"] = rel["namespace"]
    return out


def _write(obj: Any, fmt: str, table: str) -> None:
    if fmt == "json":
        sys.stdout.write(_go_json(obj))
    elif fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(obj, sort_keys=True))
    elif fmt == "table":
        sys.stdout.write(table)
    else:  # pkg/cli/output/output.go ParseFormat
        raise HelmFailure(f"invalid argument \"{fmt}\" for \"-o, --output\" flag: invalid format type")


def _values(files: list[str]) -> dict:
    merged: dict = {}
    for f in files:
        try:
            data = yaml.safe_load(Path(f).read_text())
        except OSError as e:
            raise HelmFailure(f"open {f}: no such file or directory") from e
        except yaml.YAMLError as e:
            raise HelmFailure(f"failed to parse {f}: error converting YAML to JSON: {e}") from e
        if data is None:
            continue
        if not isinstance(data, dict):
            raise HelmFailure(f"failed to parse {f}: error unmarshaling JSON: json: cannot unmarshal into Go value "
                              f"of type map[string]interface {{}}")
        merged = _merge(merged, data)
    return merged


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _need(pos: list[str], n: int, cmd: str) -> None:
    if len(pos) != n:  # cmd/helm/require/args.go ExactArgs
        raise HelmFailure(f"\"helm {cmd}\" requires {n} argument{'s' if n != 1 else ''}\n\n"
                          f"Usage:  helm {cmd} [flags]")


def cmd_upgrade(pos: list[str], flags: dict[str, Any]) -> None:
    _need(pos, 2, "upgrade [RELEASE] [CHART]")
    name, chart = pos
    ns = flags.get("--namespace") or "default"
    if len(name) > 53 or not _RELEASE_NAME.match(name):
        raise HelmFailure(f"release name \"{name}\": invalid release name, must match regex "
                          f"{_RELEASE_NAME.pattern} and the length must not be longer than 53")
    timeout = flags.get("--timeout")
    if timeout is not None and not _DURATION.match(timeout):
        raise HelmFailure(f"invalid argument \"{timeout}\" for \"--timeout\" flag: time: invalid duration \"{timeout}\"")
    server = _check_cluster(flags)
    lab = _lab()
    old = _release(lab, ns, name)
    installing = old is None
    if installing and not flags.get("--install"):
        raise HelmFailure(f"UPGRADE FAILED: \"{name}\" has no deployed releases")
    version = flags.get("--version")
    ref = resolve_chart(chart, flags.get("--repo"), version)
    if version is None:
        version = latest_version(ref)
    values = _values(flags["--values"])
    wrap = "INSTALLATION FAILED" if installing else "UPGRADE FAILED"
    if installing and not flags.get("--create-namespace") and not _namespace_exists(server, ns, flags):
        raise HelmFailure(f"{wrap}: create: failed to create: namespaces \"{ns}\" not found")
    try:
        rel = lab.call("PUT", f"/helm/releases/{ns}/{name}", json={"chart": ref, "version": version, "values": values})
    except LabError as e:
        msg = _lab_message(e)
        raise HelmFailure(msg if msg.startswith(("UPGRADE FAILED", "INSTALLATION FAILED")) else f"{wrap}: {msg}") from e
    if installing:
        sys.stdout.write(f"Release \"{name}\" does not exist. Installing it now.\n")
    else:
        sys.stdout.write(f"Release \"{name}\" has been upgraded. Happy Helming!\n")
    sys.stdout.write(_status_table(rel))


def cmd_status(pos: list[str], flags: dict[str, Any]) -> None:
    _need(pos, 1, "status RELEASE_NAME")
    _check_cluster(flags)
    rel = _release(_lab(), flags.get("--namespace") or "default", pos[0])
    if rel is None:
        raise HelmFailure("release: not found")
    _write(_record(rel), flags.get("--output") or "table", _status_table(rel))


def cmd_get(pos: list[str], flags: dict[str, Any]) -> None:
    if not pos or pos[0] != "values":
        raise HelmFailure(f"the twin's helm stand-in knows only \"helm get values\", not \"helm get {' '.join(pos)}\"")
    _need(pos[1:], 1, "get values RELEASE_NAME")
    _check_cluster(flags)
    rel = _release(_lab(), flags.get("--namespace") or "default", pos[1])
    if rel is None:
        raise HelmFailure("release: not found")
    vals = rel.get("values") or None  # Go: an empty Config map is nil -> "null"
    _write(vals, flags.get("--output") or "table", "USER-SUPPLIED VALUES:\n" + (yaml.safe_dump(vals) if vals else "null\n"))


def cmd_list(pos: list[str], flags: dict[str, Any]) -> None:
    if pos:
        raise HelmFailure(f"unknown command \"{pos[0]}\" for \"helm list\"")
    _check_cluster(flags)
    ns = None if flags.get("--all-namespaces") else flags.get("--namespace") or "default"
    rels = _lab().call("GET", "/helm/releases", params={"namespace": ns} if ns else None)["releases"]
    if flags.get("--filter"):
        rx = re.compile(flags["--filter"])
        rels = [r for r in rels if rx.search(r["name"])]
    if not flags.get("--all"):  # the default state mask: deployed and failed (pkg/action/list.go)
        rels = [r for r in rels if r.get("status") in ("deployed", "failed")]
    rels.sort(key=lambda r: (r["name"], r["namespace"]))  # action.List sorts by name (ByNameSorter)
    elems = [{"name": r["name"], "namespace": r["namespace"], "revision": str(r["revision"]),
              "updated": _go_time(r.get("updated")), "status": r["status"],
              "chart": f"{_chart_name(r)}-{r['version']}", "app_version": ""} for r in rels]
    head = "NAME\tNAMESPACE\tREVISION\tUPDATED\tSTATUS\tCHART\tAPP VERSION\n"
    table = head + "".join("\t".join(e[k] for k in ("name", "namespace", "revision", "updated", "status", "chart",
                                                      "app_version")) + "\n" for e in elems)
    _write(elems, flags.get("--output") or "table", table)


def cmd_uninstall(pos: list[str], flags: dict[str, Any]) -> None:
    if not pos:
        raise HelmFailure("\"helm uninstall\" requires at least 1 argument\n\nUsage:  helm uninstall RELEASE_NAME [...] [flags]")
    _check_cluster(flags)
    lab = _lab()
    ns = flags.get("--namespace") or "default"
    for name in pos:
        if _release(lab, ns, name) is None:
            raise HelmFailure(f"uninstall: Release not loaded: {name}: release: not found")
        lab.call("DELETE", f"/helm/releases/{ns}/{name}")
        sys.stdout.write(f"release \"{name}\" uninstalled\n")


def cmd_version(pos: list[str], flags: dict[str, Any]) -> None:
    # The Helm release the stand-in's texts come from (see the module docstring).
    sys.stdout.write("v3.21.4+g813176c\n" if flags.get("--short") else
                     'version.BuildInfo{Version:"v3.21.4", GitCommit:"813176c51bb5c181dbbd7901298ddcc104cd3417", '
                     'GitTreeState:"clean", GoVersion:"go1.25"}\n')


COMMANDS = {"upgrade": cmd_upgrade, "status": cmd_status, "get": cmd_get, "list": cmd_list, "ls": cmd_list,
            "uninstall": cmd_uninstall, "delete": cmd_uninstall, "un": cmd_uninstall, "version": cmd_version}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        pos, flags = parse(argv)
        if not pos:
            raise HelmFailure("the twin's helm stand-in needs a command: " + ", ".join(sorted(COMMANDS)))
        fn = COMMANDS.get(pos[0])
        if fn is None:  # cobra's legacyArgs for an unknown subcommand of the root
            raise HelmFailure(f"unknown command \"{pos[0]}\" for \"helm\"\nRun 'helm --help' for usage.")
        fn(pos[1:], flags)
    except HelmFailure as e:
        sys.stderr.write(f"Error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
