"""falkit.model.scrub: secrets never reach the run archive.

Covers: scrub_text removes known values as written, JSON-escaped, HTML-escaped, base64-encoded and
cut (plan tables shorten long values with …), plus PVEAPIToken=, PEM blocks (whole and cut), bearer
tokens and secret-named fields; scrubbed JSON stays valid; plotly.js is left intact (it is inlined
in every HTML export); collect_secrets finds the values of a private dir (Talos secrets,
talosconfig, kubeconfig) and of the spec's references; and end to end: a notebook run by
``falkit run`` prints the planted Proxmox token (from the env var the spec references), the twin's
real token and kubeconfig credentials, and none of them is in any archived file afterwards; the
recorded before-state's values (Git paths, the MetalLB pool) are not secrets and stay in the archive.
"""

from __future__ import annotations

import base64
import json

from helpers import patched, write_yaml
from test_runbook_support import FAL
from test_runner import make_notebooks

from falkit.cli import main
from falkit.model.scrub import MARK, collect_secrets, find_secrets, scrub_text, scrub_tree, secrets_in_text
from falkit.model.spec import load_spec

SECRET = "s3cr3t-Planted-0123456789abcdef"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"

pytest_plugins = ("test_runbook_support",)  # the session twin and state_env fixtures


def test_scrub_text_forms():
    text = "\n".join([
        f"plain {SECRET} end",
        json.dumps({"out": f"x{SECRET}y", "html": f"<td>{SECRET}</td>"}),
        base64.b64encode(SECRET.encode()).decode(),
        f"cut {SECRET[:30]}…",
        "Authorization: PVEAPIToken=root@pam!falkit=11111111-2222-3333-4444-555555555555",
        PEM,
        json.dumps(PEM),
        "-----BEGIN CERTIFICATE-----\\nMIIBszCCAVmgAwIBAgIQ…",
        "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig",
        "token: abcdefghijklmnopqrstuvwxyz012345",
    ])
    out = scrub_text(text, {SECRET})
    assert SECRET not in out and SECRET[:16] not in out
    assert base64.b64encode(SECRET.encode()).decode().rstrip("=") not in out
    assert "11111111-2222" not in out and "MIIEvQIBADAN" not in out and "MIIBszCCAVmg" not in out
    assert "eyJhbGciOiJSUzI1NiJ9" not in out and "abcdefghijklmnopqrstuvwxyz012345" not in out
    assert out.count(MARK) >= 10
    json.loads(out.splitlines()[1])  # still valid JSON


def test_scrub_keeps_plotly_js_and_ordinary_text():
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    assert scrub_text(js, {SECRET}) == js
    assert scrub_text("talos-worker-01 10.10.0.11 52:54:00:10:10:11 key: value", {SECRET}) == \
        "talos-worker-01 10.10.0.11 52:54:00:10:10:11 key: value"


def test_collect_secrets_from_private_dir_and_spec(tmp_path, monkeypatch):
    private = tmp_path / "private"
    private.mkdir()
    (private / "secrets.yaml").write_text(
        "cluster:\n  id: Xk2Pq9Lm3Nv8Rt5Wy1Zb7Cd4Fg6Hj0Ks\n  secret: c2VjcmV0LWNsdXN0ZXItc2VjcmV0\n"
        "trustdinfo:\n  token: abcdef.0123456789abcdef\ncerts:\n  os:\n    key: LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0K\n")
    (private / "kubeconfig").write_text(
        "apiVersion: v1\nclusters:\n- cluster:\n    server: https://10.10.0.10:6443\n    certificate-authority-data: Q0EtREFUQS1YWVotMTIzNDU2Nzg5MA==\n"
        "  name: c\nusers:\n- name: admin\n  user:\n    client-key-data: S0VZLURBVEEtQUJDLTk4NzY1NDMyMQ==\n")
    monkeypatch.setenv("FALKIT_TEST_SCRUB_TOKEN", SECRET)
    spec = load_spec(write_yaml(tmp_path, patched({"secrets.proxmox_token": {"env": "FALKIT_TEST_SCRUB_TOKEN"}})))
    found = collect_secrets(spec=spec, private_dir=private)
    assert {SECRET, "Xk2Pq9Lm3Nv8Rt5Wy1Zb7Cd4Fg6Hj0Ks", "c2VjcmV0LWNsdXN0ZXItc2VjcmV0", "abcdef.0123456789abcdef",
            "Q0EtREFUQS1YWVotMTIzNDU2Nzg5MA==", "S0VZLURBVEEtQUJDLTk4NzY1NDMyMQ=="} <= found
    assert "https://10.10.0.10:6443" not in found and "admin" not in found
    assert secrets_in_text("just-one-token-value\n") == {"just-one-token-value"}
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "a.csv").write_text("x,Xk2Pq9Lm3Nv8Rt5Wy1Zb7Cd4Fg6Hj0Ks\n")
    (archive / "b.bin").write_bytes(b"\x00\xff")  # binary files are left alone
    assert [p.name for p in scrub_tree(archive, found)] == ["a.csv"]
    assert find_secrets(archive, found) == []


PRINT_NB = '''# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {{}}

# %%
import os, pathlib, json
from IPython.display import HTML, display
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply, notebook="20-tsecret", **options)

# %%
planted = os.environ["FALKIT_PVE_TOKEN"]
print("planted token:", planted)
display(HTML(f"<b>{{planted}}</b>"))
conn = lab.target.connection
print("twin token:", pathlib.Path(conn["proxmox"]["token_file"]).read_text())
print(pathlib.Path(conn["kubernetes"]["kubeconfig"]).read_text())
print("PVEAPIToken=root@pam!falkit=" + planted)
print({PEM!r})
planted
'''


def test_planted_secret_absent_from_every_archived_file(state_env, tmp_path, monkeypatch):
    base, conn = state_env
    monkeypatch.setenv("FALKIT_PVE_TOKEN", SECRET)  # the env var parameters/fal.yaml references
    nbs = make_notebooks(tmp_path / "notebooks", {"20-tsecret": PRINT_NB.format(PEM=PEM)})
    (nbs / "10-tdesc.ipynb").unlink()
    monkeypatch.setenv("FALKIT_NOTEBOOKS_DIR", str(nbs))
    outputs = tmp_path / "outputs"
    assert main(["run", "--params", str(FAL), "--outputs", str(outputs)]) == 0
    run_dir = next(outputs.iterdir())
    twin_token = open(conn["proxmox"]["token_file"]).read().strip()
    kube_secrets = secrets_in_text(open(conn["kubernetes"]["kubeconfig"]).read())
    files = sorted(p.name for p in run_dir.iterdir())
    assert "20-tsecret.ipynb" in files and "20-tsecret.html" in files and "run.json" in files
    nb = (run_dir / "20-tsecret.ipynb").read_text()
    assert "planted token: " + MARK in nb  # the cell ran and printed it; the archive has the mark
    json.loads(nb)
    for secret in {SECRET, twin_token, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", *kube_secrets}:
        assert find_secrets(run_dir, [secret]) == [], secret


def test_paths_are_not_secrets_but_a_slash_led_token_is():
    from falkit.model.scrub import NOT_SECRET, secrets_in_text
    from falkit.steps.benchmarks import RESULTS_INDEX
    from falkit.steps.rollback.state import BEFORE_FILE

    assert RESULTS_INDEX in NOT_SECRET  # falkit's index of benchmark files is bookkeeping
    assert BEFORE_FILE in NOT_SECRET  # the rollback's record of the lab's fields, shown in the archive
    assert secrets_in_text("/tmp/pytest-of-root/outputs/bench/fio-twin.json\n") == set()
    assert secrets_in_text("/9j4AAQSkZJRgABAQEASABIAAD+zz==") == {"/9j4AAQSkZJRgABAQEASABIAAD+zz=="}


PATH_NB = '''# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {}

# %%
import json, os
from falkit import runbook
from falkit.steps.rollback.state import record_before_state

lab = runbook.open(params, target=target, apply=apply, notebook="20-tpath", **options)

# %%
before = record_before_state(lab.target, lab.spec)  # what 10-network's before-state step records
print(json.dumps({"planted": os.environ["FALKIT_PVE_TOKEN"], "fields": before.fields}))
'''


def test_before_state_values_are_not_secrets_in_the_archive(state_env, tmp_path, monkeypatch):
    """The before-state (before-state.json in the private dir: Git paths, the MetalLB pool, file
    checksums) is falkit's record of the lab, not a secret store: its values stay in the archive
    (a Git path such as kubernetes/platform/traefik/service.yaml was ***REDACTED*** in 40-cilium's
    plan rows), while the planted token is still scrubbed."""
    base, conn = state_env
    monkeypatch.setenv("FALKIT_PVE_TOKEN", SECRET)
    nbs = make_notebooks(tmp_path / "notebooks", {"20-tpath": PATH_NB})
    (nbs / "10-tdesc.ipynb").unlink()
    monkeypatch.setenv("FALKIT_NOTEBOOKS_DIR", str(nbs))
    private = base / "twin" / "private" / load_spec(FAL).lab
    saved = (private / "before-state.json").read_text() if (private / "before-state.json").is_file() else None
    outputs = tmp_path / "outputs"
    try:
        assert main(["run", "--params", str(FAL), "--outputs", str(outputs)]) == 0
        fields = json.loads((private / "before-state.json").read_text())["fields"]
    finally:  # leave the session twin's private dir as it was
        if saved is None:
            (private / "before-state.json").unlink(missing_ok=True)
        else:
            (private / "before-state.json").write_text(saved)
    run_dir = next(outputs.iterdir())
    archived = (run_dir / "20-tpath.ipynb").read_text() + (run_dir / "20-tpath.html").read_text()
    paths = {v for k, v in fields.items() if k.endswith("|path") and "/" in v}
    assert "kubernetes/platform/traefik" in paths  # the twin's Argo CD Application of traefik
    for value in paths | {v for k, v in fields.items() if k.startswith("metallb|")}:
        assert value in archived, value
    assert find_secrets(run_dir, [SECRET]) == [] and "planted" in archived
