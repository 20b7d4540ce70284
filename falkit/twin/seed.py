"""The pre-migration lab ("before") where the lab spec's ``previous`` section does not say.

The twin's Proxmox half (:func:`falkit.twin.supervisor.pve_config_from_spec`) and the GitOps
repository it starts with (:func:`falkit.twin.gitops_fixture.terraform_files`) both build the lab
the seed describes (docs/UPSTREAM.md); these are the figures the seed leaves out, in one place.
"""

from __future__ import annotations

# The Longhorn disk's size is not in the seed: DEFAULT 300 GB, the size the seed gives the disk
# that replaces it.
BEFORE_LONGHORN_DISK_GB = 300
BEFORE_NETWORK = {"cidr": "10.30.0.0/24", "gateway": "10.30.0.1", "host_ip": "10.30.0.2",
                  "mac_prefix": "52:54:00:10:30"}
