"""falkit's Proxmox gateway: the only falkit package (outside the twin) that imports ``proxmoxer``.

falkit talks to Proxmox VE through proxmoxer over HTTPS on both targets (the twin's fake PVE API
and the live host). Everything falkit needs from that client is here:

- :mod:`.client`: the sessions — :func:`token_client` (API token; what every step uses),
  :func:`root_client` (root@pam ticket, for the few settings PVE refuses to tokens) and
  :func:`add_response_hook`, the public hook through which the journal
  (:meth:`falkit.clients.journal.Journal.pve_hook`) records every mutating call;
- :mod:`.api`: calls that raise with PVE's own words (:func:`call`, :class:`PveCallError`), task
  waits that raise (:func:`wait_task`), VM configs read back (:func:`list_vms`, :class:`VmState`)
  and PVE's property strings parsed (:func:`parse_net`, :func:`parse_drive`);
- :mod:`.privileges`: the role falkit's token needs and the read-only check that it holds it.

``.importlinter`` (contract ``proxmoxer-gateway``) keeps every other falkit module off proxmoxer.
"""

from __future__ import annotations

from .api import (
    NET_MODELS,
    SIZE_UNITS_GIB,
    DriveConf,
    NetConf,
    PveCallError,
    TaskFailedError,
    TaskTimeoutError,
    VmState,
    call,
    list_vms,
    lock_hint,
    parse_drive,
    parse_net,
    parse_size_gib,
    split_props,
    task_label,
    task_log,
    vm_config,
    wait_task,
)
from .client import PVE_TIMEOUT_S, add_response_hook, root_client, token_client
from .privileges import check_privileges, pve_role, pveum_line

__all__ = ["NET_MODELS", "PVE_TIMEOUT_S", "SIZE_UNITS_GIB", "DriveConf", "NetConf", "PveCallError",
           "TaskFailedError", "TaskTimeoutError", "VmState", "add_response_hook", "call", "check_privileges",
           "list_vms", "lock_hint", "parse_drive", "parse_net", "parse_size_gib", "pve_role", "pveum_line",
           "root_client", "split_props", "task_label", "task_log", "token_client", "vm_config", "wait_task"]
