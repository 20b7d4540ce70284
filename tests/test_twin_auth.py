"""Local security of the twin (issue 16 item 7): a local user without the operator's files cannot
use the twin's APIs, and snapshots go only under the state directory.

Covers, against a twin started by the supervisor (``falkit twin up``'s code) in a world-traversable
directory, with real HTTP requests:

- the Kubernetes API (TLS) refuses a request without credentials (except the anonymous health
  paths) and one with a wrong token with kube-apiserver's 401 ``Unauthorized`` Status, on the TLS
  port and on the lab port; the Secrets (the GitOps password) stay unreadable;
- the lab API (``/lab/state``, ``/lab/faults``, ``/lab/snapshot``) and the Proxmox control API
  (``/state``, ``/faults``, ``/snapshot``, ``/health``) refuse both with 401 and change nothing;
  Proxmox's own API still needs its token; the TrueNAS stand-in its key;
- ``POST /snapshot`` and ``POST /lab/snapshot`` refuse a path outside the state directory, a ``..``
  escape, a symlink out of it and an existing non-snapshot file (403, nothing written);
  ``falkit twin snapshot`` refuses an outside path and writes a name under ``DIR/snapshots`` (0700),
  every part 0600;
- file and directory modes: the twin directory 0700, every credential and connection file 0600;
- the command lines of the twin's processes (and the tool wrappers) hold no secret;
- a second, unprivileged user (``nobody``; the tests run as root here) can read none of the
  credential files and gets 401 from every API; without root, the test checks that no credential
  file has a group/other permission bit instead;
- falkit's own clients read the credentials from the connection files: ``PveControl`` and
  ``LabClient`` given only a URL, the official Python client and the real ``kubectl`` with the
  kubeconfig the twin writes, the ``helm``/``talosctl`` stand-ins; ``kubectl`` with a wrong token or
  another API's: "You must be logged in to the server (Unauthorized)" (without any credentials
  kubectl asks for a username before it sends a request: that case is checked with raw requests).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
import requests
import yaml

from falkit.model.errors import TwinError
from falkit.twin import supervisor
from falkit.twin.lab.client import LabApiError, LabClient
from falkit.twin.pvecontrol import PveControl

ROOT = Path(__file__).resolve().parents[1]
FAL = ROOT / "parameters" / "fal.yaml"
KUBECTL = shutil.which("kubectl")
UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
                "reason": "Unauthorized", "code": 401}
CREDENTIAL_FILES = ("pve-token", "pve-password", "pve-control-token", "lab-token", "kubeconfig", "truenas-key",
                    "pve.key", "kube.key", "connection.json", "pve.json", "lab.json", "pids.json")


@pytest.fixture(scope="module")
def tw():
    """The twin in its "before" state, in a directory every user may traverse (0755), so only
    the twin's own modes protect it."""
    base = Path(tempfile.mkdtemp(prefix="falkit-auth-"))
    os.chmod(base, 0o755)
    old = os.environ.get("FALKIT_STATE_DIR")
    os.environ["FALKIT_STATE_DIR"] = str(base)
    root = base / "twin"
    try:
        conn = supervisor.up(str(FAL), state="before", state_dir=root, quiet=True)
        kc = json.loads(Path(conn["kubernetes"]["kubeconfig"]).read_text())
        ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"])
        ca_file = base / "kube-ca.pem"  # public, for requests' verify
        ca_file.write_bytes(ca)
        tokens = {"kube": kc["users"][0]["user"]["token"]}
        for name in ("pve-token", "pve-password", "pve-control-token", "lab-token", "truenas-key"):
            tokens[name] = (root / name).read_text().strip()
        yield {"conn": conn, "root": root, "base": base, "ca": str(ca_file), "tokens": tokens, "kubeconfig": kc}
    finally:
        supervisor.down(root)
        if old is None:
            os.environ.pop("FALKIT_STATE_DIR", None)
        else:
            os.environ["FALKIT_STATE_DIR"] = old
        shutil.rmtree(base, ignore_errors=True)


def _bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


def _kube(tw, path: str, token: str | None = None, *, plain: bool = False) -> requests.Response:
    if plain:  # the lab port serves the Kubernetes paths too
        base = tw["conn"]["lab_api"].removesuffix("/lab")
        return requests.get(base + path, headers=_bearer(token), timeout=10)
    return requests.get(tw["conn"]["kubernetes"]["server"] + path, headers=_bearer(token), timeout=10,
                        verify=tw["ca"])


def test_kubernetes_api_refuses_no_or_wrong_credentials_as_kube_apiserver(tw):
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repo-gitops", "namespace": "argocd"},
              "stringData": {"password": "canary-git-password"}}
    made = requests.post(tw["conn"]["kubernetes"]["server"] + "/api/v1/namespaces/argocd/secrets", json=secret,
                         headers=_bearer(tw["tokens"]["kube"]), verify=tw["ca"], timeout=10)
    assert made.status_code == 201, made.text
    for token in (None, "wrong"):
        r = _kube(tw, "/api/v1/namespaces/argocd/secrets/repo-gitops", token)
        assert r.status_code == 401 and "canary" not in r.text and "Y2FuYXJ5" not in r.text
    for plain in (False, True):
        for token in (None, "wrong", ""):
            r = _kube(tw, "/api/v1/secrets", token, plain=plain)
            assert r.status_code == 401 and r.json() == UNAUTHORIZED, (plain, token, r.text)
        r = _kube(tw, "/api/v1/namespaces/argocd/secrets", "Basic " + tw["tokens"]["kube"], plain=plain)
        assert r.status_code == 401
        assert _kube(tw, "/version", None, plain=plain).status_code == 401
        # anonymous only on the health paths; a wrong token fails even there (the union authenticator)
        assert _kube(tw, "/healthz", None, plain=plain).text == "ok"
        assert _kube(tw, "/readyz", "wrong", plain=plain).status_code == 401
    ok = _kube(tw, "/api/v1/secrets", tw["tokens"]["kube"])
    assert ok.status_code == 200 and ok.json()["kind"] == "SecretList"
    assert "repo-gitops" in [i["metadata"]["name"] for i in ok.json()["items"]]
    assert _kube(tw, "/api/v1/secrets", tw["tokens"]["kube"], plain=True).status_code == 200


def test_lab_and_pve_control_apis_refuse_no_or_wrong_credentials(tw):
    conn, tokens = tw["conn"], tw["tokens"]
    lab, ctl = conn["lab_api"], conn["pve_control"]
    lab_faults = LabClient(conn).faults()
    calls = [("GET", lab + "/state", None), ("GET", lab + "/faults", None),
             ("POST", lab + "/faults", {"kind": "node_not_ready", "node": "talos-worker-01"}),
             ("POST", lab + "/snapshot", {"path": str(tw["root"] / "x.lab")}), ("GET", lab + "/talos/kubeconfig", None),
             ("GET", ctl + "/state", None), ("GET", ctl + "/health", None), ("GET", ctl + "/faults", None),
             ("POST", ctl + "/faults", {"kind": "offline_node"}),
             ("POST", ctl + "/snapshot", {"path": str(tw["root"] / "x.json")})]
    for method, url, body in calls:
        for token in (None, "wrong", tokens["kube"]):  # another API's token is no good either
            r = requests.request(method, url, json=body, headers=_bearer(token), timeout=10)
            assert r.status_code == 401 and "Unauthorized" in r.json()["error"], (method, url, token, r.text)
            assert not any(v in r.text for v in tokens.values())
    assert not (tw["root"] / "x.lab").exists() and not (tw["root"] / "x.json").exists()
    assert LabClient(conn).faults() == lab_faults and PveControl(conn).faults() == []  # nothing was injected
    assert requests.get(f"{ctl}/state", headers=_bearer(tokens["pve-control-token"]), timeout=10).status_code == 200
    assert requests.get(f"{lab}/state", headers=_bearer(tokens["lab-token"]), timeout=10).status_code == 200
    # Proxmox's own API needs its token; the TrueNAS stand-in its key
    px = conn["proxmox"]
    pve = requests.get(f"https://{px['host']}:{px['port']}/api2/json/nodes", verify=px["ca_file"], timeout=10)
    assert pve.status_code == 401
    # (the "before" lab has no TrueNAS VM: connection refused, 503; with one, its "Not authenticated" 401)
    assert requests.get(conn["truenas"]["url"] + "/api/v2.0/interface", timeout=10).status_code in (401, 503)


def test_snapshots_are_written_only_inside_the_state_dir(tw, tmp_path):
    conn, root, tokens = tw["conn"], tw["root"], tw["tokens"]
    outside = tmp_path / "stolen.json"
    link = root / "out-link"
    link.symlink_to(tmp_path, target_is_directory=True)
    try:
        for url, token in ((conn["pve_control"] + "/snapshot", tokens["pve-control-token"]),
                           (conn["lab_api"] + "/snapshot", tokens["lab-token"])):
            for path in (str(outside), str(root / ".." / "escape.json"), str(link / "via-link.json"),
                         str(root / "connection.json"), str(root / "pve-token"), "/etc/passwd"):
                r = requests.post(url, json={"path": path}, headers=_bearer(token), timeout=30)
                assert r.status_code == 403, (url, path, r.text)
            assert list(tmp_path.iterdir()) == [] and not (root.parent / "escape.json").exists()
            assert json.loads((root / "connection.json").read_text())["target"] == "twin"
            r = requests.post(url, json={"path": str(root / "snapshots" / "api.json")}, headers=_bearer(token), timeout=60)
            assert r.status_code == 200, r.text
            assert stat.S_IMODE((root / "snapshots" / "api.json").stat().st_mode) == 0o600
    finally:
        link.unlink()
    env = {**os.environ, "FALKIT_STATE_DIR": str(tw["base"]), "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "falkit.cli", "twin", "snapshot"]
    refused = subprocess.run([*cli, str(outside)], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "only inside the twin's state directory" in refused.stderr
    assert not outside.exists() and not Path(str(outside) + ".lab").exists()
    made = subprocess.run([*cli, "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    snap = Path(made.stdout.strip())
    assert snap == root / "snapshots" / "demo"
    assert stat.S_IMODE(snap.parent.stat().st_mode) == 0o700
    for part in (snap, Path(f"{snap}.lab"), Path(f"{snap}.private")):
        assert stat.S_IMODE(part.stat().st_mode) == 0o600, part


def test_credential_files_are_0600_under_a_0700_directory(tw):
    root = tw["root"]
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for name in CREDENTIAL_FILES:
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o600, name
    conn_text = (root / "connection.json").read_text()
    assert not any(v in conn_text for v in tw["tokens"].values() if v)  # paths of the secrets only
    for name in ("pve_control_token_file", "lab_token_file"):
        assert Path(tw["conn"][name]).parent == root


def test_no_secret_on_the_command_line_of_a_twin_process(tw):
    pids = json.loads((tw["root"] / "pids.json").read_text())["processes"]
    argvs = []
    for p in pids.values():
        argvs.append(Path(f"/proc/{p['pid']}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        children = Path(f"/proc/{p['pid']}/task/{p['pid']}/children")
        for child in children.read_text().split() if children.exists() else []:
            argvs.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    argvs += [(tw["root"] / "bin" / tool).read_text() for tool in ("talosctl", "helm")]
    everything = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    secrets = [v for v in tw["tokens"].values() if v]
    assert len(secrets) == 6
    for text in [*argvs, everything]:
        assert not any(s in text for s in secrets)


UNPRIVILEGED = r'''
import json, ssl, sys, urllib.request, urllib.error
root, urls = sys.argv[1], json.loads(sys.argv[2])
out = {"read": {}, "http": {}}
for name in json.loads(sys.argv[3]):
    try:
        open(root + "/" + name).read()
        out["read"][name] = "READ"
    except OSError as e:
        out["read"][name] = type(e).__name__
try:
    import os; os.listdir(root); out["list"] = "LISTED"
except OSError as e:
    out["list"] = type(e).__name__
tls = ssl.create_default_context(); tls.check_hostname = False; tls.verify_mode = ssl.CERT_NONE
for url in urls:
    try:
        urllib.request.urlopen(url, timeout=10, context=tls)
        out["http"][url] = 200
    except urllib.error.HTTPError as e:
        out["http"][url] = e.code
print(json.dumps(out))
'''


def test_a_second_unprivileged_user_can_neither_read_the_credentials_nor_use_the_apis(tw):
    root, conn = tw["root"], tw["conn"]
    if os.geteuid() != 0:  # no second user to switch to: the modes say the same (no group/other bits)
        for name in CREDENTIAL_FILES:
            assert (root / name).stat().st_mode & 0o077 == 0, name
        assert root.stat().st_mode & 0o077 == 0
        return
    urls = [conn["kubernetes"]["server"] + "/api/v1/namespaces/argocd/secrets", conn["lab_api"] + "/state",
            conn["pve_control"] + "/state"]
    r = subprocess.run(["/usr/bin/python3", "-c", UNPRIVILEGED, str(root), json.dumps(urls), json.dumps(CREDENTIAL_FILES)],
                       user=65534, group=65534, extra_groups=[], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/"}, cwd="/")
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["list"] == "PermissionError"
    assert set(seen["read"].values()) == {"PermissionError"}, seen["read"]
    assert set(seen["http"].values()) == {401}, seen["http"]


def test_falkits_clients_read_the_credentials_from_the_connection_files(tw):
    conn = tw["conn"]
    assert PveControl(conn["pve_control"]).health()["ok"] is True  # URL only: token from connection.json
    assert "talos_nodes" in LabClient(conn["lab_api"]).state()
    with pytest.raises(TwinError, match="401"):
        PveControl(conn["pve_control"], token="wrong").state()
    with pytest.raises(LabApiError) as exc:
        LabClient(conn["lab_api"], token="wrong").state()
    assert exc.value.status == 401
    from kubernetes import client, config

    with config.new_client_from_config(config_file=conn["kubernetes"]["kubeconfig"]) as api:
        assert {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items} >= {"default", "kube-system"}
    env = {**os.environ, "FALKIT_STATE_DIR": str(tw["base"])}
    helm = subprocess.run([str(tw["root"] / "bin" / "helm"), "list", "-A", "--kubeconfig",
                           conn["kubernetes"]["kubeconfig"]], env=env, capture_output=True, text=True, timeout=60)
    assert helm.returncode == 0 and "cilium" in helm.stdout, helm.stderr
    talosctl = subprocess.run([str(tw["root"] / "bin" / "talosctl"), "version", "--insecure", "-n", "10.30.0.10"],
                              env=env, capture_output=True, text=True, timeout=60)
    assert "Unauthorized" not in talosctl.stdout + talosctl.stderr and "Client:" in talosctl.stdout


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")
def test_the_real_kubectl_works_with_the_twins_kubeconfig_and_is_refused_without_it(tw, tmp_path):
    kc = tw["conn"]["kubernetes"]["kubeconfig"]
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "KUBECACHEDIR": str(tmp_path / "cache")}

    def kubectl(*args: str, config: str = kc) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, "--kubeconfig", config, *args], env=env, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)

    ok = kubectl("get", "namespaces")
    assert ok.returncode == 0 and "kube-system" in ok.stdout, ok.stderr
    wrong = kubectl("get", "secrets", "-A", "--token", "wrong")
    assert wrong.returncode != 0 and "You must be logged in to the server (Unauthorized)" in wrong.stderr
    other = yaml.safe_load(Path(kc).read_text())
    other["users"][0]["user"] = {"token": tw["tokens"]["lab-token"]}  # another API's token, in the kubeconfig
    other_file = tmp_path / "other.kubeconfig"
    other_file.write_text(yaml.safe_dump(other))
    none = kubectl("get", "namespaces", config=str(other_file))
    assert none.returncode != 0 and "You must be logged in to the server (Unauthorized)" in none.stderr
    assert not any(v in ok.stdout + wrong.stderr + none.stderr for v in tw["tokens"].values())


def test_https_kube_api_presents_a_certificate_for_the_loopback_address(tw):
    # the CA in the kubeconfig verifies the server (no insecure-skip-tls-verify needed)
    server = tw["conn"]["kubernetes"]["server"]
    ctx = ssl.create_default_context(cafile=tw["ca"])
    req = urllib.request.Request(server + "/healthz")
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        assert r.read() == b"ok"
    assert "insecure-skip-tls-verify" not in json.dumps(tw["kubeconfig"])
