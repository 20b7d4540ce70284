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
# 5. **Mayastor's leftovers removed**: falkit's test and benchmark claims, then the `mayastor-3`
#    StorageClass and the DiskPools once no claim that stays uses them;
# 6. **a single worker again**: the extra workers cordoned, drained and powered off (destroyed only
#    with `destroy_extra_workers`);
# 7. **the old addresses**: talos-cp-01 and talos-worker-01 back on 10.30.0.x — the old address added
#    first, the talosctl and Kubernetes endpoints switched, then the new address removed, so the
#    cluster stays reachable; the storage NIC and the Mayastor node label leave their configs;
# 8. **the VMs as before**: old MACs, bridges and balloon, no storage NIC;
# 9. **containers the migration added** stopped (destroyed only with `destroy_new_containers`);
# 10. **the bridges as before**: vmbr0 back on its old address and gateway, vmbr1 removed.
#
# Then the lab is compared with its before-state, field by field, in one before/after table (also
# archived with the run): every row equal, or kept by an option named in the row.
#
# Data is never deleted without an explicit parameter (and `allow_destructive`). `falkit run` runs
# every notebook with the same `apply`, so this one applies only with `rollback = True` as well:
# `falkit run --only 80 --set rollback=true`. Otherwise it is a dry run that shows the plans.

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {"rollback": False, "destroy_extra_workers": False, "delete_migrated_volumes": False, "destroy_new_containers": False}

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
# ## 5 · Mayastor's leftovers removed

# %%
lab.step("rollback-mayastor").apply()

# %% [markdown]
# ## 6 · Back to a single worker

# %%
lab.step("rollback-workers").apply()

# %%
lab.checks("rollback-workers")

# %% [markdown]
# ## 7 · Plex back in Kubernetes
# The container is stopped (unless `stop_plex_container: False`), the library it holds now copied
# back onto Plex's old claim (checksums compared), the saved Plex Deployment created again. The
# container is destroyed only with `destroy_plex_container` (and `allow_destructive`).

# %%
lab.step("rollback-plex").apply()

# %% [markdown]
# ## 8 · The control plane and worker-01 on their old addresses

# %%
lab.step("rollback-talos").apply()

# %%
lab.checks("rollback-talos")

# %% [markdown]
# ## 9 · The VMs as before

# %%
lab.step("rollback-vms").apply()

# %% [markdown]
# ## 10 · Containers the migration added

# %%
lab.step("rollback-containers").apply()

# %% [markdown]
# ## 11 · The bridges as before

# %%
lab.step("rollback-network").apply()

# %% [markdown]
# ## Terraform's code back
# The seed's `git checkout <previous-commit>` for `infrastructure/terraform`: every file falkit edited
# there gets its content from before falkit's first edit. Then run `terraform apply` yourself.

# %%
lab.step("rollback-terraform").apply()

# %%
lab.checks("rollback-terraform")

# %% [markdown]
# ## The GitOps tree as before
# Every other file that still differs from the tree before the migration (a value written back in
# another YAML style, `mayastor-app.yaml` which the migration added) gets its old content, committed
# and delivered to the branch Argo CD syncs.

# %%
lab.step("rollback-gitops").apply()

# %% [markdown]
# ## The before-state
# Every compared field before the migration and now: one row per field, `equal`, `kept (<option>)`
# or a failure; the service IPs must also lie on the host's management network.

# %%
lab.step("rollback")

# %%
lab.checks("rollback")

# %% [markdown]
# The before/after table (also archived with the run as `80-rollback.before-after.json`):

# %%
lab.before_after()

# %%
lab.finish()
