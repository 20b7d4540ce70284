"""The Kubernetes client falkit uses: the official ``kubernetes`` client's ``ApiClient``, journaled.

- :func:`journaled_api_client` builds it from a kubeconfig file (``config.load_kube_config`` into
  a fresh ``Configuration``: the kubeconfig's server, its CA for TLS verification, its client
  certificate or token; nothing is written back to the file). ``Target.kube()`` is one.
- :class:`JournaledApiClient` is an ``ApiClient`` whose ``call_api`` — the one call every request
  of the generated APIs, the DynamicClient and :func:`falkit.clients.kube.kraw_get` goes through — records
  every non-GET call (method, path, status) in falkit's :class:`~falkit.clients.journal.Journal`, and adds
  the method and API path to the reason of an error answer.
- :func:`dynamic_client` is the ``kubernetes.dynamic.DynamicClient`` over an ``ApiClient``, made
  once per ``ApiClient`` (its discovery is cached with it).
- :data:`ApiError` is the client's ``ApiException``: every error answer of the API server raised
  through this package is one (the DynamicClient's ``NotFoundError`` etc. subclass it); it has
  ``status``, ``reason`` and ``body``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from ..journal import Journal

ApiError = ApiException


class JournaledApiClient(client.ApiClient):
    """``ApiClient`` that records every non-GET call (method, path, status) in a journal."""

    journal: Journal | None = None

    def call_api(self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
        try:
            response = super().call_api(method, url, header_params=header_params, body=body,
                                        post_params=post_params, _request_timeout=_request_timeout)
        except client.ApiException as exc:
            exc.reason = f"{exc.reason} on {method.upper()} {urlsplit(url).path}"
            raise
        if not 200 <= getattr(response, "status", 200) <= 299:
            # The client's error (ApiException.from_response, raised after this returns) names a
            # status and reason, never the request: add the method and API path to the reason it
            # copies (the DynamicClient's errors copy it again), so "503" says what failed.
            response.reason = f"{response.reason} on {method.upper()} {urlsplit(url).path}"
        if self.journal is not None:
            path = urlsplit(url).path
            segments = [x for x in path.split("/") if x]
            hint = segments[-1 if method.upper() == "POST" else -2] if len(segments) >= 2 else "object"
            self.journal.record("kube", method, path, getattr(response, "status", None), body=body, kind_hint=hint)
        return response


def journaled_api_client(kubeconfig: str | os.PathLike, journal: Journal | None) -> JournaledApiClient:
    """A journaled ``kubernetes.client.ApiClient`` for a kubeconfig file."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg, persist_config=False)
    api = JournaledApiClient(configuration=cfg)
    api.journal = journal
    return api


def dynamic_client(api_client: Any) -> DynamicClient:
    """The ``DynamicClient`` over ``api_client`` (made on first use and kept with it)."""
    dyn = getattr(api_client, "_falkit_dynamic", None)
    if dyn is None:
        dyn = DynamicClient(api_client)
        api_client._falkit_dynamic = dyn
    return dyn
