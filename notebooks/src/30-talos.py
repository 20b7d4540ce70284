# %% [markdown]
# # 30 · Talos: machine configs, bootstrap, kubeconfig
#
# falkit generates the machine configs for the configured Talos version from the cluster's secrets
# bundle, kept in the private state directory (0600) — never in this notebook's outputs. An existing
# cluster's secrets are imported (`secrets.yaml`, a control-plane `controlplane.yaml` or a
# `terraform.tfstate` with `talos_machine_secrets`, put in the private state directory); falkit
# refuses to make new ones for a cluster that already exists. Everything goes through `talosctl`
# (on the twin, its stand-in on PATH): fresh VMs in maintenance mode get their config with
# `--insecure`, bootstrap runs only when etcd does not, and every node enables KubePrism
# (localhost:7445), which the Cilium values of the next notebook use.
# The seed's worker patches: kernel module `nvme-tcp` — written `nvme_tcp`, the module's real name
# (modprobe accepts both, `/proc/modules` lists `nvme_tcp`); sysctls `vm.nr_hugepages` (Mayastor's
# hugepages), `vm.overcommit_memory`, `vm.panic_on_oom`; eth0 on 10.10.0.0/24 and eth1 on
# 10.11.0.0/24 with static addresses; node label `openebs.io/engine=mayastor`; the kubelet mount of
# `/var/local` Mayastor needs. Cluster-wide: CNI `none` and kube-proxy disabled (Cilium replaces
# both). Every document is validated against the Talos schema before it is applied.
#
# Applying to a running node may reboot it or move its address: **disruptive**.

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {"allow_disruptive": False}

# %%
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply, notebook="30-talos", **options)

# %% [markdown]
# The lab at a glance (refreshes while a step applies).

# %%
lab.dashboard()

# %% [markdown]
# ## Plan and apply
# Per node the config summary diff (modules, sysctls, addresses, labels), then bootstrap (once),
# kubeconfig and the health wait.

# %%
lab.step("talos").apply()

# %% [markdown]
# ## Checks

# %%
lab.checks("talos")

# %%
lab.finish()
