"""The clients: the one way falkit reaches each component of a lab, live or the twin.

- :mod:`.target` — a connected lab (:func:`connect`): the twin started on loopback, or the live
  lab from the spec's secrets; it hands out the clients below;
- :mod:`.kube` — the only importer of the ``kubernetes`` client (journaled API client, CRUD, waits, Jobs);
- :mod:`.proxmox` — the only importer of ``proxmoxer`` (HTTPS token client, tasks, privileges);
- :mod:`.backends` — ``talosctl`` and ``helm`` run as commands;
- :mod:`.truenas` — TrueNAS's REST API; :mod:`.journal` — every call a client makes, for the record.
"""
