"""What falkit renders from the design: pure functions from the spec and design to documents.

- :mod:`.talosconfig` — Talos machine-config patches per node;
- :mod:`.ciliumvalues` — Cilium's Helm values, the LB-IPAM pool and the L2 announcement policy;
- :mod:`.mayastorvalues` — Mayastor's Helm values, DiskPools and StorageClasses;
- :mod:`.gitops` — the GitOps checkout and the Git edits falkit plans (:class:`GitEdit`), made
  with the ``git`` command;
- :mod:`.terraform` — the operator's Terraform read with an HCL2 parser, and the edits planned to it.
"""
