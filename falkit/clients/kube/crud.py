"""falkit's one vocabulary for Kubernetes objects: plain dicts in, plain dicts out.

Every function takes the target's ``ApiClient`` (``target.kube()``, a
:class:`~falkit.clients.kube.client.JournaledApiClient`, so every change is journaled) and works through
the client's ``DynamicClient`` (:func:`~falkit.clients.kube.client.dynamic_client`):

- :func:`kget` — the object, or None when it (or its kind) does not exist;
- :func:`klist` — the objects of a kind (all namespaces unless ``namespace``; a label selector),
  ``[]`` when the kind is not served (e.g. a CRD not installed yet);
- :func:`served` — whether the API server serves a kind;
- :func:`kcreate`, :func:`kapply` (server-side apply, field manager ``falkit``, conflicts forced),
  :func:`kpatch` (JSON merge patch, RFC 7386), :func:`kdelete` (False when already gone);
- :func:`kraw_get` — GET of an arbitrary API path (e.g. a service proxy), decoded JSON.

:class:`KubeChanger` is *how* a step changes an object (apply, annotate, delete) over these: steps
take a changer instead of calling the client, so that objects Argo CD manages are changed through
Git instead by swapping this one class (:class:`falkit.steps.ownership.GitOpsChanger`, issue 9).

An error answer raises the client's ``ApiException`` (:data:`falkit.clients.kube.ApiError`), as the
DynamicClient's subclass for its status (``NotFoundError`` for 404, ...).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError, api_exception

from .client import dynamic_client

FIELD_MANAGER = "falkit"
MERGE_PATCH = "application/merge-patch+json"


def _resource(api: Any, api_version: str, kind: str) -> Any:
    """The DynamicClient's resource for a kind (``ResourceNotFoundError`` when it is not served)."""
    return dynamic_client(api).resources.get(api_version=api_version, kind=kind)


def served(api: Any, api_version: str, kind: str) -> bool:
    """True when the API server serves ``kind`` of ``api_version`` (discovery; a miss re-discovers)."""
    try:
        _resource(api, api_version, kind)
        return True
    except ResourceNotFoundError:
        return False


def kget(api: Any, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
    """The object as a dict, or None when it (or its kind) does not exist."""
    try:
        res = _resource(api, api_version, kind)
        obj = res.get(name=name, namespace=namespace) if res.namespaced else res.get(name=name)
    except (NotFoundError, ResourceNotFoundError):
        return None
    return obj.to_dict()


def klist(api: Any, api_version: str, kind: str, namespace: str | None = None,
          label_selector: str | None = None) -> list[dict]:
    """Objects of a kind (``[]`` when the kind is not served, e.g. a CRD not yet installed)."""
    try:
        res = _resource(api, api_version, kind)
        kw: dict[str, Any] = {"namespace": namespace} if namespace else {}
        if label_selector:
            kw["label_selector"] = label_selector
        return [i.to_dict() if hasattr(i, "to_dict") else dict(i) for i in res.get(**kw).to_dict().get("items") or []]
    except (NotFoundError, ResourceNotFoundError):
        return []


def kcreate(api: Any, body: dict) -> dict:
    """Create ``body`` (apiVersion, kind, metadata.name[, namespace])."""
    md = body["metadata"]
    return _resource(api, body["apiVersion"], body["kind"]).create(body=body, namespace=md.get("namespace")).to_dict()


def kapply(api: Any, obj: dict[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
    """Server-side apply ``obj`` (apiVersion, kind, metadata.name[, namespace] required; a namespaced
    object without a namespace goes to ``default``), conflicts forced."""
    res = _resource(api, obj["apiVersion"], obj["kind"])
    md = obj["metadata"]
    kwargs: dict[str, Any] = {"body": obj, "name": md["name"], "field_manager": field_manager, "force_conflicts": True}
    if res.namespaced:
        kwargs["namespace"] = md.get("namespace", "default")
    return res.server_side_apply(**kwargs).to_dict()


def kpatch(api: Any, api_version: str, kind: str, name: str, patch: dict, namespace: str | None = None,
           field_manager: str | None = None) -> dict:
    """A JSON merge patch (RFC 7386): a value of None removes the key."""
    kw: dict[str, Any] = {"field_manager": field_manager} if field_manager else {}
    return _resource(api, api_version, kind).patch(
        body=patch, name=name, namespace=namespace, content_type=MERGE_PATCH, **kw).to_dict()


def kdelete(api: Any, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
    """Delete; False when it (or its kind) was already gone."""
    try:
        res = _resource(api, api_version, kind)
        res.delete(name=name, namespace=namespace) if res.namespaced else res.delete(name=name)
    except (NotFoundError, ResourceNotFoundError):
        return False
    return True


def kraw_get(api: Any, path: str, timeout: float | None = None) -> Any:
    """GET an arbitrary API path (e.g. a service proxy) and return the decoded JSON; ``timeout``
    (seconds) bounds the request.

    Public API only: the generated ``ApiClient``'s ``param_serialize`` / ``call_api`` /
    ``response_deserialize`` — the calls ``kubernetes.dynamic.DynamicClient.request`` makes (no
    DynamicClient, so no discovery request comes first) — so it follows the client's signature:
    the private ``call_api(path, "GET", auth_settings=...)`` form of kubernetes <= 30 raises
    TypeError from kubernetes 31 on (issue 13 fault 7). A non-2xx answer raises the DynamicClient's
    ``ApiException`` subclass for the status (``NotFoundError`` for 404), as ``request`` does.
    """
    method, url, headers, body, post = api.param_serialize(
        "GET", path, query_params=[], header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
    resp = api.call_api(method, url, header_params=headers, body=body, post_params=post, _request_timeout=timeout)
    resp.read()
    if not 200 <= resp.status <= 299:
        try:
            api.response_deserialize(resp, {})
        except ApiException as e:
            raise api_exception(e) from None
    return json.loads(resp.data)


class KubeChanger:
    """How falkit changes Kubernetes objects (see the module docstring). ``api`` is the ApiClient."""

    def __init__(self, api: Any, field_manager: str = FIELD_MANAGER):
        self.api = api
        self.field_manager = field_manager

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` (:func:`kapply`)."""
        return kapply(self.api, obj, self.field_manager)

    def annotate(self, api_version: str, kind: str, name: str, namespace: str | None,
                 annotations: dict[str, str | None]) -> dict[str, Any]:
        """Set annotations; a value of None removes the key (JSON merge patch)."""
        return kpatch(self.api, api_version, kind, name, {"metadata": {"annotations": annotations}}, namespace,
                      field_manager=self.field_manager)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete; False when it was already gone."""
        return kdelete(self.api, api_version, kind, name, namespace)
