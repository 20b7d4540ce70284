# %% [markdown]
# # 45 · Argo CD and the GitOps repository
#
# In the seed, Terraform deploys Argo CD and Argo CD deploys the platform from the operator's GitOps
# repository (`kubernetes/platform/`: Traefik, cert-manager, External Secrets, the media apps minus
# Plex, and Mayastor). Argo CD's server takes an "Auto" address from the Cilium pool.
#
# This step installs or upgrades Argo CD, registers the repository (credentials by reference, never
# shown), creates the app-of-apps `platform` and waits until every Application is Synced and
# Healthy. From here on, falkit changes objects Argo CD manages **in the Git checkout** (a diff, a
# commit on `spec.gitops.branch`, never pushed unless `spec.gitops.push`) — a direct patch would be
# reverted by self-heal.

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {}

# %%
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply, notebook="45-argocd", **options)

# %% [markdown]
# ## Plan and apply

# %%
lab.step("argocd").apply()

# %% [markdown]
# ## Checks
# The release, argocd-server's address from the pool, the repository, each Application Synced/Healthy.

# %%
lab.checks("argocd")

# %%
lab.finish()
