"""proxmoxer sessions: the API-token client every step uses, the root@pam client, response hooks.

- :func:`token_client` is proxmoxer's ``ProxmoxAPI`` with API-token auth over HTTPS, TLS verified
  (proxmoxer 2.3.0 passes ``verify_ssl`` to requests' ``verify``, so a CA bundle *path* works: the
  twin's ``ca_file``; for the live lab ``pve-ca.pem`` in the private dir, else the system CAs);
- :func:`root_client` logs in as the root@pam *user* (a ticket): PVE allows only that login to set
  LXC device passthrough and host bind mounts ("only allowed for root@pam");
- :func:`add_response_hook` adds a ``requests`` response hook to a client's session: how the
  journal (:meth:`falkit.clients.journal.Journal.pve_hook`) sees every call without a monkeypatched client.

proxmoxer has no public accessor for the session its resources send requests with: in proxmoxer
2.3.0 ``core.py`` (``ProxmoxAPI.__init__``) keeps the https backend's ``requests.Session`` in
``ProxmoxAPI._store["session"]``, and every resource's ``_request`` calls
``self._store["session"].request`` (``backends/https.py`` ``Backend.get_session`` builds a *new*
session on every call, so it cannot be used to reach that one). :func:`add_response_hook` is the
one place in falkit that reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from proxmoxer import ProxmoxAPI

from ...model.errors import TargetError

PVE_TIMEOUT_S = 30

ResponseHook = Callable[..., Any]


def add_response_hook(api: ProxmoxAPI, hook: ResponseHook) -> ProxmoxAPI:
    """Add ``hook`` (``hook(response, *args, **kwargs)``, requests' response-hook signature) to the
    session every call of ``api`` goes through; returns ``api``."""
    session = api._store["session"]  # proxmoxer 2.3.0: the https backend's requests.Session (see above)
    session.hooks["response"].append(hook)
    return api


def token_client(host: str, port: int, token_id: str, secret: str, verify: str | bool, *,
                 hooks: Iterable[ResponseHook] = ()) -> ProxmoxAPI:
    """proxmoxer ``ProxmoxAPI`` with API-token auth (``token_id`` is ``user@realm!tokenname``);
    each of ``hooks`` sees every response (:func:`add_response_hook`)."""
    if "!" not in token_id:
        raise TargetError(f"Proxmox token id {token_id!r} must look like user@realm!tokenname")
    user, token_name = token_id.split("!", 1)
    api = ProxmoxAPI(host, port=port, user=user, token_name=token_name, token_value=secret,
                     verify_ssl=verify, timeout=PVE_TIMEOUT_S)
    for hook in hooks:
        add_response_hook(api, hook)
    return api


def root_client(host: str, port: int, password: str, verify: str | bool, *,
                hooks: Iterable[ResponseHook] = ()) -> ProxmoxAPI:
    """proxmoxer ``ProxmoxAPI`` logged in as the root@pam *user* (ticket): PVE allows only that
    login to set LXC device passthrough and host bind mounts ("only allowed for root@pam")."""
    api = ProxmoxAPI(host, port=port, user="root@pam", password=password, verify_ssl=verify, timeout=PVE_TIMEOUT_S)
    for hook in hooks:
        add_response_hook(api, hook)
    return api
