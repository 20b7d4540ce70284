"""falkit.render.talosconfig: configs for Talos 1.11 (inline network) and 1.13 (HostnameConfig/LinkConfig/
ResolverConfig documents) validate against the real schemas and carry the seed's patches (nvme_tcp
spelled as the kernel does, hugepages + sysctls, mayastor label, /var/local mount, CNI none,
kube-proxy off); a wrong document is rejected; secrets never show in a repr; the talos plan from
the "before" state shows a per-node config diff and is empty once nodes run the planned config.

Issue 13: every node's config enables KubePrism on 7445, the port the Cilium values use (fault 1);
an existing cluster's secrets are imported from a control-plane machine config (as ``talosctl gen
secrets --from-controlplane-config``) or a Terraform state's ``talos_machine_secrets``, and a lab
with a ``previous`` cluster but no secrets is refused, naming the files (fault 4)."""

from __future__ import annotations

import json

import pytest
import yaml

from falkit.model.errors import StepError
from falkit.model.schemas import SchemaValidationError, check_talos_documents
from falkit.render.ciliumvalues import values as cilium_values
from falkit.render.talosconfig import SecretsBundle, config_digest, new_secrets, render, summary, summary_diff
from falkit.steps.base import StepOptions
from falkit.steps.talos import NodeFacts, TalosFacts, plan_talos


@pytest.fixture(scope="module")
def bundle():
    return new_secrets()


def _spec(fal, version):
    return fal.model_copy(update={"versions": fal.versions.model_copy(update={"talos": version})})


@pytest.mark.parametrize("version", ["1.11.6", "1.13.0"])
def test_configs_validate_and_carry_patches(fal, bundle, version):
    cfgs = render(_spec(fal, version), bundle)
    assert set(cfgs) == {"talos-cp-01", "talos-worker-01", "talos-worker-02", "talos-worker-03"}
    w = summary(list(cfgs["talos-worker-02"].docs))
    assert w["modules"] == ["nvme_tcp"]
    assert w["sysctls"] == {"vm.nr_hugepages": "1024", "vm.overcommit_memory": "1", "vm.panic_on_oom": "0"}
    assert w["labels"] == {"openebs.io/engine": "mayastor"} and w["mounts"] == ["/var/local"]
    assert w["addresses"] == ["eth0=10.10.0.12/24", "eth1=10.11.0.12/24"] and w["hostname"] == "talos-worker-02"
    main = cfgs["talos-cp-01"].docs[0]
    assert main["cluster"]["network"]["cni"] == {"name": "none"} and main["cluster"]["proxy"] == {"disabled": True}
    assert main["cluster"]["controlPlane"]["endpoint"] == "https://10.10.0.10:6443"
    assert summary(list(cfgs["talos-cp-01"].docs))["labels"] == {}
    kinds = [d.get("kind") for d in cfgs["talos-worker-01"].docs]
    if version.startswith("1.13"):
        assert kinds[1:] == ["HostnameConfig", "LinkConfig", "LinkConfig", "ResolverConfig"]
        assert "network" not in main["machine"]
    else:
        assert kinds == [None] and main["machine"]["network"]["interfaces"][0]["interface"] == "eth0"
    mount = cfgs["talos-worker-01"].docs[0]["machine"]["kubelet"]["extraMounts"][0]
    assert mount["options"] == ["rbind", "rshared", "rw"]


def test_worker_ca_keys_are_not_shipped(fal, bundle):
    w = render(fal, bundle)["talos-worker-01"].docs[0]
    assert w["machine"]["ca"]["key"] == "" and w["cluster"]["ca"]["key"] == ""
    assert "serviceAccount" not in w["cluster"]


def test_wrong_document_rejected(fal, bundle):
    docs = [dict(d) for d in render(fal, bundle)["talos-worker-01"].docs]
    docs[0] = dict(docs[0], machine=dict(docs[0]["machine"], network={"interfaces": [{"interface": "eth0", "addresses": "10.10.0.11/24"}]}))
    with pytest.raises(SchemaValidationError):
        check_talos_documents(docs, "1.11.6")
    inline_on_113 = [dict(docs[0])]
    with pytest.raises(SchemaValidationError, match="network"):
        check_talos_documents(inline_on_113, "1.13.0")


def test_secrets_never_in_repr(fal, bundle):
    cfg = render(fal, bundle)["talos-cp-01"]
    token = bundle.data["secrets"]["bootstraptoken"]
    assert token in cfg.text
    assert token not in repr(cfg) and token not in repr(bundle)
    pem = bundle.cert("os")["key"]
    assert "PRIVATE KEY" in __import__("base64").b64decode(pem).decode()


OLD_WORKER = [{"version": "v1alpha1", "machine": {
    "type": "worker", "kernel": {"modules": [{"name": "iscsi_tcp"}]},
    "network": {"hostname": "talos-worker-01", "interfaces": [{"interface": "eth0", "addresses": ["10.30.0.11/24"]}]},
    "kubelet": {"extraMounts": [{"destination": "/var/lib/longhorn"}]}}, "cluster": {"network": {"cni": {"name": "flannel"}}}}]


def _facts(fal, bundle, nodes, saved=True, boot=True, kc=True, imported=""):
    return TalosFacts(bundle, saved, saved, nodes, boot, kc, True, imported=imported)


def test_plan_from_before_state(fal, bundle):
    nodes = {"talos-worker-01": NodeFacts("talos-worker-01", "10.10.0.11", "10.30.0.11", False, tuple(OLD_WORKER)),
             "talos-worker-02": NodeFacts("talos-worker-02", "10.10.0.12", "10.10.0.12", True)}
    plan = plan_talos(fal, _facts(fal, bundle, nodes, saved=False, kc=False, imported="secrets.yaml"), StepOptions())
    rows = [(c.op, c.kind, c.name, c.field, c.disruptive) for c in plan.changes]
    assert rows == [("create", "talos-secrets", "talos-secrets.yaml", "", False), ("create", "talosconfig", "talosconfig", "", False),
                    ("update", "talos-config", "talos-worker-01", "", True), ("create", "talos-config", "talos-worker-02", "", False),
                    ("action", "kubeconfig", "kubeconfig", "fetch", False), ("action", "cluster", "homelab-test", "wait", False)]
    w1 = plan.changes[2]
    assert "modules: iscsi_tcp -> nvme_tcp" in w1.reason and "vm.nr_hugepages=1024" in w1.reason
    assert "10.30.0.11/24 -> eth0=10.10.0.11/24, eth1=10.11.0.11/24" in w1.reason
    assert w1.data.ip == "10.30.0.11" and w1.data.insecure is False
    assert plan.changes[3].data.insecure is True
    assert bundle.data["secrets"]["bootstraptoken"] not in (str(plan.to_json(redact=True)) + str(plan)
                                                            + plan._repr_html_() + repr(plan))
    assert str(plan.to_json(redact=True)).count("<Sealed: not archived>") == 4  # bundle, talosconfig, 2 configs
    with pytest.raises(TypeError, match="Sealed, which does not serialise"):  # the sealed config is never written out in the clear
        plan.to_json()
    assert any("talos-cp-01: not reachable" in n for n in plan.notes)


def test_plan_converged_is_empty(fal, bundle):
    cfgs = render(fal, bundle)
    nodes = {n: NodeFacts(n, c.ip, c.ip, False, c.docs) for n, c in cfgs.items()}
    plan = plan_talos(fal, _facts(fal, bundle, nodes), StepOptions())
    assert plan.empty and len(plan.noops) == 4, str(plan)
    assert config_digest(list(cfgs["talos-cp-01"].docs)) == cfgs["talos-cp-01"].digest


def test_bootstrap_planned_once(fal, bundle):
    cfgs = render(fal, bundle)
    nodes = {n: NodeFacts(n, c.ip, c.ip, False, c.docs) for n, c in cfgs.items()}
    plan = plan_talos(fal, _facts(fal, bundle, nodes, boot=False), StepOptions())
    assert [(c.kind, c.field) for c in plan.changes] == [("etcd", "bootstrap"), ("cluster", "wait")]


def test_summary_diff_words():
    assert summary_diff([], [{"version": "v1alpha1", "machine": {"kernel": {"modules": [{"name": "nvme-tcp"}]}}}]) == [
        "modules: (none) -> nvme_tcp"]


def test_existing_cluster_without_secrets_is_refused(fal, bundle):
    nodes = {"talos-worker-01": NodeFacts("talos-worker-01", "10.10.0.11", "10.30.0.11", False, tuple(OLD_WORKER))}
    with pytest.raises(StepError, match="will not generate new secrets for a cluster that already exists") as exc:
        plan_talos(fal, _facts(fal, bundle, nodes, saved=False, kc=False), StepOptions())
    assert all(f in str(exc.value) for f in ("secrets.yaml", "controlplane.yaml", "terraform.tfstate"))


@pytest.mark.parametrize("version", ["1.11.6", "1.13.0"])
def test_kubeprism_enabled_on_the_port_cilium_uses(fal, bundle, version):
    port = cilium_values(fal)["k8sServicePort"]
    for cfg in render(_spec(fal, version), bundle).values():
        main = cfg.docs[0]
        assert main["machine"]["features"]["kubePrism"] == {"enabled": True, "port": port}


def test_secrets_imported_from_a_controlplane_config_and_a_terraform_state(fal, bundle):
    cp = render(fal, bundle)["talos-cp-01"].text
    got = SecretsBundle.from_machine_config(cp).data
    assert got["certs"]["os"] == bundle.data["certs"]["os"] and got["certs"]["etcd"] == bundle.data["certs"]["etcd"]
    assert got["cluster"] == bundle.data["cluster"] and got["trustdinfo"] == bundle.data["trustdinfo"]
    assert got["secrets"]["bootstraptoken"] == bundle.data["secrets"]["bootstraptoken"]
    assert render(fal, SecretsBundle(got))["talos-worker-02"].digest == render(fal, bundle)["talos-worker-02"].digest
    worker = render(fal, bundle)["talos-worker-01"].text
    with pytest.raises(ValueError, match="not a control-plane machine config"):
        SecretsBundle.from_machine_config(worker)
    c = bundle.data["certs"]
    ms = {"cluster": bundle.data["cluster"],
          "secrets": {"bootstrap_token": bundle.data["secrets"]["bootstraptoken"],
                      "secretbox_encryption_secret": bundle.data["secrets"]["secretboxencryptionsecret"]},
          "trustdinfo": bundle.data["trustdinfo"],
          "certs": {"etcd": {"cert": c["etcd"]["crt"], "key": c["etcd"]["key"]},
                    "k8s": {"cert": c["k8s"]["crt"], "key": c["k8s"]["key"]},
                    "k8s_aggregator": {"cert": c["k8saggregator"]["crt"], "key": c["k8saggregator"]["key"]},
                    "k8s_serviceaccount": {"key": c["k8sserviceaccount"]["key"]},
                    "os": {"cert": c["os"]["crt"], "key": c["os"]["key"]}}}
    state = {"version": 4, "resources": [{"mode": "managed", "type": "talos_machine_secrets", "name": "this",
                                          "instances": [{"attributes": {"machine_secrets": ms}}]}]}
    tf = SecretsBundle.from_terraform_state(json.dumps(state))
    assert render(fal, tf)["talos-cp-01"].digest == render(fal, bundle)["talos-cp-01"].digest
    assert yaml.safe_load(tf.to_yaml())["certs"]["os"] == c["os"]
