"""falkit's use of the kubernetes client stays on its public API (issue 13 fault 7): `kraw_get`
(GET of an arbitrary API path, used for Mayastor's REST API through the service proxy) works with
the installed client through the journaled ApiClient a target builds (kubernetes 37 raised
TypeError on the old private `call_api(path, "GET", auth_settings=...)` form), answers the server's
JSON, raises the client's NotFoundError for a missing path, and the installed client is inside the
range pyproject.toml pins (kubernetes-validate's jsonschema requirement included)."""

from __future__ import annotations

import tomllib
from importlib.metadata import requires, version
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.dynamic.exceptions import NotFoundError
from packaging.requirements import Requirement
from test_runbook_support import FAL

from falkit.clients.kube import kraw_get
from falkit.clients.target import connect

pytest_plugins = ("test_runbook_support",)  # the session twin and state_env fixtures
ROOT = Path(__file__).resolve().parents[1]


def test_kraw_get_through_the_targets_client(state_env):
    t = connect(FAL, "twin")
    core = client.CoreV1Api(t.kube())
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="kraw-test",
                                                                          labels={"probe": "yes"})))
    got = kraw_get(t.kube(), "/api/v1/namespaces/kraw-test")
    assert got["metadata"]["name"] == "kraw-test" and got["metadata"]["labels"]["probe"] == "yes"
    with pytest.raises(NotFoundError):
        kraw_get(t.kube(), "/api/v1/namespaces/kraw-missing")
    assert [e["method"] for e in t.journal.since(0)] == ["POST"]  # the GETs are not journaled
    core.delete_namespace("kraw-test")


def test_installed_client_is_in_the_pinned_range():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = {Requirement(d).name: Requirement(d) for d in deps}
    assert reqs["kubernetes"].specifier.contains(version("kubernetes"))
    assert not reqs["kubernetes"].specifier.contains("30.1.0")  # the range no longer admits the old client
    for r in map(Requirement, requires("kubernetes-validate") or []):
        if r.name == "jsonschema" and r.marker is None:
            assert set(r.specifier) <= set(reqs["jsonschema"].specifier) or \
                reqs["jsonschema"].specifier.contains("4.23.0") and not reqs["jsonschema"].specifier.contains("4.22.0")
