# %% [markdown]
# # 10 · Network: bridges vmbr0 and vmbr1
#
# The seed puts the host on the management network 10.10.0.0/24 (gateway 10.10.0.1, bridge `vmbr0`
# on the 2.5 GbE port) and asks for a second bridge `vmbr1` for the storage network 10.11.0.0/24
# ("Create vmbr1 bridge for storage network — assign physical interface or VLAN").
#
# falkit reads the node's network configuration, plans per bridge and field, stages the changes
# (`POST`/`PUT /nodes/{node}/network`) and applies them with one reload (`PUT /nodes/{node}/network`,
# a task it waits for). Moving `vmbr0` to another address or port is **disruptive** — you reach the
# host through it — and is refused unless `allow_disruptive` is true.

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {"allow_disruptive": False}

# %%
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply, notebook="10-network", **options)

# %% [markdown]
# ## The lab before the migration
# Recorded once, before the first change, in the private state dir: every field 80-rollback compares
# (bridges, VMs, nodes, service IPs, MetalLB, claims, the GitOps tree) and a checksum per volume.

# %%
lab.step("before-state").apply()

# %% [markdown]
# ## Plan and apply
# The plan is shown before anything changes; applying stages every bridge change, then reloads once.

# %%
lab.step("network").apply()

# %% [markdown]
# ## Checks
# Each bridge active with the planned ports and address, nothing left staged.

# %%
lab.checks("network")

# %%
lab.finish()
