# %% [markdown]
# # 20 · VMs: control plane and three workers
#
# The seed's table: control plane 2 vCPU / 4 GB / 30 GB; each worker 2 vCPU / 9 GB / 30 GB OS disk
# on `local-lvm` plus a 300 GB Mayastor disk on `helford`; `net0` on vmbr0 and (workers) `net1` on
# vmbr1 with the MAC scheme `52:54:00:10:10:XX` / `52:54:00:10:11:XX` — changed from
# `52:54:00:10:30:XX`, so the existing VMs' `net0` changes MAC.
#
# Missing VMs are created in parallel (one progress bar per Proxmox task) and booted from the Talos
# ISO (downloaded to `local` first if absent). Drift in an existing VM is a change: memory/cores
# wait as pending changes for a restart, and the plan restarts the VM (**disruptive**); a MAC or
# bridge change is **disruptive**; a disk can grow online but never shrink (**destructive**,
# refused). Without `allow_disruptive` the plan is refused as a whole — here and in `falkit run`.
# The bridges come from 10-network: without `vmbr1` the plan is refused ("run 10-network first").

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {"allow_disruptive": False, "allow_destructive": False}

# %%
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply, notebook="20-vms", **options)

# %% [markdown]
# The lab at a glance (refreshes while a step applies).

# %%
lab.dashboard()

# %% [markdown]
# ## Plan and apply

# %%
lab.step("vms").apply()

# %% [markdown]
# ## Checks
# Every VM running with the planned size and NICs.

# %%
lab.checks("vms")

# %% [markdown]
# ## Terraform
# In the seed, Terraform (`infrastructure/terraform` in the GitOps repository) owns these VMs. Its
# code follows the migration in the same Git checkout (storage NIC, MAC prefix, `mayastor_disk`,
# the workers with their `storage_ip`, `cilium_lb_ip_pool`, MetalLB removed), or the next
# `terraform apply` would undo it. With `terraform` on PATH in an initialised directory, its
# `terraform plan` must not destroy anything (`allow_destructive` accepts it).

# %%
lab.step("terraform").apply()

# %%
lab.checks("terraform")

# %%
lab.finish()
