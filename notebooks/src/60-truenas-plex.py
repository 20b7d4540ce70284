# %% [markdown]
# # 60 · TrueNAS and Plex
#
# TrueNAS with NFS exported on the storage network only (disabled in the seed; enabling it re-runs
# the host budget and refuses to apply on an error), the Plex container — an application container
# Proxmox VE 9.1 creates from Plex's OCI image (unprivileged, the 680M's render node passed in, NFS
# media and the library's export bind-mounted from the host) — and Kubernetes NFS mounts moved to
# TrueNAS's storage address.
#
# Then the Plex cutover: the library in the `plex-config` claim is copied to the export the
# container mounts at `/config` (checksums compared), the container starts, and only once Plex
# answers on port 32400 is the Kubernetes Plex removed (through Git when Argo CD manages it). The
# old claim is kept unless `delete_plex_volume`.

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {}

# %%
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply, notebook="60-truenas-plex", **options)

# %%
lab.step("truenas_plex").apply()

# %%
lab.step("plex").apply()

# %%
lab.checks("truenas_plex")

# %%
lab.checks("plex")

# %%
lab.finish()
