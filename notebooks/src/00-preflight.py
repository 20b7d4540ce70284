# %% [markdown]
# # 00 · Preflight
#
# The plan falkit derived from the lab spec (every VM with its VMID, disks, NICs and MACs; the
# LoadBalancer addresses), the findings of the preflight checks, and the host budget: what each VM
# and container is allocated against what the host has. Nothing is changed by this notebook.
#
# Run it with `falkit run` (all notebooks, archived) or alone: `papermill 00-preflight.ipynb out.ipynb -p target twin`.

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {}

# %%
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply, notebook="00-preflight", **options)

# %% [markdown]
# ## Plan, findings and host budget
# Errors stop the run here; warnings say what to watch (each with its fix).

# %%
findings = lab.preflight()

# %%
lab.finish()
