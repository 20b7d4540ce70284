# %% [markdown]
# # 50 · Mayastor, volume migration and storage benchmarks
#
# OpenEBS Mayastor 2.8 on the three workers: the preflight on each node through Talos (hugepages,
# `nvme_tcp`, the data disk, io-engine cores), the Helm release, one DiskPool per worker, the
# StorageClass `mayastor-3` and a written test volume with its replica placement. Then every
# Longhorn volume is copied to Mayastor and verified by checksum before its workload moves, and
# Longhorn's manifests are disabled in the GitOps checkout. Last, fio measures what the seed
# promised — on the twin the numbers are *modelled*, and every chart says so.

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {}

# %%
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply, notebook="50-mayastor", **options)

# %% [markdown]
# The lab at a glance (refreshes while a step applies).

# %%
lab.dashboard()

# %% [markdown]
# ## Mayastor: preflight, install, pools, StorageClass, test volume

# %%
lab.step("mayastor").apply()

# %%
lab.checks("mayastor")

# %% [markdown]
# ## Volume migration: Longhorn → Mayastor (copy, checksums, repoint), then Longhorn disabled

# %%
lab.step("volumes").apply()

# %%
lab.checks("volumes")

# %% [markdown]
# ## Benchmarks: the seed's claims, the physical ceilings, and the results

# %%
lab.step("benchmarks").apply()

# %%
bench = lab.benchmark_report()

# %%
lab.checks("benchmarks")

# %%
lab.finish()
