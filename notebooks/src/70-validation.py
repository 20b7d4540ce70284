# %% [markdown]
# # 70 · Validation
#
# Every check of the seed's "Validation Steps" and "Monitoring and Troubleshooting" sections, as
# data: what was expected, what was observed, how to fix it. Nodes Ready with both IPs, no unhealthy
# pods, Cilium agents and L2 announcements (a Lease holder per service), every LoadBalancer IP from
# the pool and the pinned ones in place, Mayastor (io-engine, hugepages, DiskPools, StorageClass, a
# fresh PVC that binds and takes writes), the storage network between every pair of workers, ArgoCD
# applications (when installed), TrueNAS and Plex (when enabled).
#
# Nothing in the lab is changed. Two checks run falkit's own test Jobs: a fresh PVC
# `falkit-validate-<id>` is written and then deleted again (only that PVC, which this notebook
# created), and one ping Job per worker on the host network. On the twin the ping results are
# modelled, and the table says so. The notebook fails — and with it `falkit run` — if any check
# fails, after showing all of them.

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {}

# %%
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply, notebook="70-validation", **options)

# %%
lab.step("validation")

# %% [markdown]
# ## The checks
# One table, one row per check, failures with the command that shows more; then the checks per area.

# %%
checks = lab.checks("validation")

# %%
lab.validation_chart(checks)

# %% [markdown]
# ## Operator hand-off
# The seed's manual post-migration tasks, generated: DHCP reservations for every VM NIC and the
# Plex container, DNS records for every service with its new IP, and the Cloudflare tunnel
# endpoints that change. `falkit run` also writes them as CSV into the run archive (`handoff/`).

# %%
csv_files = lab.handoff()

# %% [markdown]
# `lab.finish()` fails the notebook (and `falkit run`) when any check failed. Opened as is
# (`apply = False`) on a lab that is not migrated yet, it fails: that is the expected result here.

# %% tags=["raises-exception"]
lab.finish()
