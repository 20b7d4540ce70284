# %% [markdown]
# # 80 · Rollback
#
# The seed's rollback plan, made executable. Each part is planned and shown before it is applied:
#
# 1. **MetalLB back**: its Helm release, the `IPAddressPool` 10.30.0.65-10.30.0.100, the
#    `L2Advertisement`, and every service annotated `metallb.universe.tf/loadBalancerIPs` with its
#    old IP (Cilium's LB annotations removed);
# 2. **Cilium's pool and L2 policy removed**, only once MetalLB holds every old IP;
# 3. **Longhorn re-enabled**: its `*.disabled` manifests renamed back in the GitOps checkout (commit
#    and push them yourself; ArgoCD syncs Longhorn);
# 4. **volumes moved back**: each workload on its original claim, data written since the migration
#    copied back, checksums compared. The Mayastor copies are kept unless `delete_migrated_volumes`;
# 5. **a single worker again**: the extra workers cordoned, drained and powered off (destroyed only
#    with `destroy_extra_workers`). Returning the remaining VMs to their old MACs and 10.30.0.x
#    addresses is a re-IP of the cluster falkit does not automate: the plan's notes list it.
#
# Then the lab is compared with its before-state: the same service IPs, the same volume data.
#
# Data is never deleted without an explicit parameter (and `allow_destructive`). `falkit run` runs
# every notebook with the same `apply`, so this one applies only with `rollback = True` as well:
# `falkit run --only 80 --set rollback=true`. Otherwise it is a dry run that shows the plans.

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {"rollback": False, "destroy_extra_workers": False, "delete_migrated_volumes": False}

# %%
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply and options.get("rollback", False), notebook="80-rollback",
                   **options)

# %% [markdown]
# ## 1 · MetalLB back

# %%
lab.step("rollback-metallb").apply()

# %% [markdown]
# ## 2 · Cilium LB pool and L2 policy removed

# %%
lab.step("rollback-cilium-lb").apply()

# %% [markdown]
# ## 3 · Longhorn re-enabled in the GitOps checkout

# %%
lab.step("rollback-longhorn").apply()

# %% [markdown]
# ## 4 · Volumes back on their original claims

# %%
lab.step("rollback-volumes").apply()

# %%
lab.checks("rollback-volumes")

# %% [markdown]
# ## 5 · Back to a single worker

# %%
lab.step("rollback-workers").apply()

# %%
lab.checks("rollback-workers")

# %% [markdown]
# ## Plex back in Kubernetes
# The container is stopped (unless `stop_plex_container: False`), the library it holds now copied
# back onto Plex's old claim (checksums compared), the saved Plex Deployment created again. The
# container is destroyed only with `destroy_plex_container` (and `allow_destructive`).

# %%
lab.step("rollback-plex").apply()

# %% [markdown]
# ## Terraform's code back
# The seed's `git checkout <previous-commit>` for `infrastructure/terraform`: every file falkit edited
# there gets its content from before falkit's first edit. Then run `terraform apply` yourself.

# %%
lab.step("rollback-terraform").apply()

# %%
lab.checks("rollback-terraform")

# %% [markdown]
# ## The before-state
# Service IPs and volume data as before the migration.

# %%
lab.step("rollback")

# %%
lab.checks("rollback")

# %%
lab.finish()
