# %% [markdown]
# # 60 · TrueNAS and Plex
#
# TrueNAS with NFS exported on the storage network only (disabled in the seed; enabling it re-runs
# the host budget and refuses to apply on an error), the Plex container (unprivileged, the 680M's
# render node passed in, NFS media bind-mounted from the host), and Kubernetes NFS mounts moved
# to TrueNAS's storage address. Proxmox's API cannot run commands in a container: the checks read
# the container's config and say how to confirm inside it.

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
lab.checks("truenas_plex")

# %%
lab.finish()
