"""The plan vocabulary: what a step's ``plan`` returns and its ``apply`` executes.

- :mod:`.diff` — :class:`Change`, :class:`Noop` and :class:`Plan` (a step's changes, shown as a
  table and a YAML diff; saved and loaded as JSON);
- :mod:`.payloads` — the typed, frozen payload of each change (a Helm release, a Kubernetes
  apply/delete, a Git edit, a Proxmox config, a wait) that compares and serialises.

The executors that carry the payloads out are :mod:`falkit.steps.executors`.
"""
