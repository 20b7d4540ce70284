# %% [markdown]
# # 40 · Cilium LoadBalancer instead of MetalLB
#
# The seed moves the LoadBalancer from MetalLB (pool 10.30.0.65-100) to Cilium: L2 announcements,
# external IPs, a `CiliumLoadBalancerIPPool` 10.10.0.50-99 and an L2 announcement policy. Traefik is
# pinned to 10.10.0.80 (annotation `lbipam.cilium.io/ips`; the seed's `io.cilium/lb-ipam-ips` is a
# deprecated alias), Argo CD takes an address from the pool, Longhorn's UI goes with Longhorn.
#
# Cilium is installed or upgraded with Helm values checked against the chart's schema (kube-proxy
# replacement through KubePrism, the client rate limit sized to the L2 leases). Moving a service's
# address is **disruptive** for its clients. MetalLB is removed only after every LoadBalancer
# service has its new IP.

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {"allow_disruptive": False}

# %%
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply, notebook="40-cilium", **options)

# %% [markdown]
# The lab at a glance (refreshes while a step applies).

# %%
lab.dashboard()

# %% [markdown]
# ## Plan and apply

# %%
lab.step("cilium").apply()

# %% [markdown]
# ## Checks
# Each service: old IP -> new IP, and the node announcing it.

# %%
lab.checks("cilium")

# %%
lab.finish()
