"""Reports a person can read (issue 12 item 8), as rendered by falkit's own display objects.

Covers:
- a plan reads like ``terraform plan``: a "N to add, M to change, K to destroy" line (and "to run"
  for actions), ``+``/``~``/``-``/``>`` per change, the HTML table left-aligned, every reason in full;
  its text form (a notebook's text/plain, ``repr``) is the plan, not a dataclass dump;
- configuration changes show a unified YAML diff instead of digests: the Talos plan from the
  "before" state (running config -> planned config, secrets redacted: the bootstrap token, CA keys
  and certificates never appear, a changed secret is marked "(changed)"), Helm values, a Kubernetes
  object's spec;
- numbers in tables are formatted (``166.7``, ``20,000``), never ``166.66666666666666``;
- ``lab.checks(...)`` in a notebook shows its table once: the cell's echo of the returned list adds
  nothing (no ``[Check(check=…)]``), displaying the list later shows the table, ``repr`` is text;
- the host-budget chart names each resource once (subplot title, no repeated tick label);
- the run's index page (``render_index``): time, falkit version and commit, lab, target, each
  notebook's status and counts and a link to its report; a failed run says where and how to resume.
The index and the report titles of a real ``falkit run`` are covered in tests/test_runner.py
(``test_run_index_page_titles_and_readable_outputs``); the chart in Chromium in
tests/browser/test_report_charts.py.
"""

from __future__ import annotations

import re

import pytest

from falkit.plan.diff import REDACTED, Change, Plan, yaml_diff
from falkit.render.talosconfig import new_secrets
from falkit.runbook.runner import render_index, report_title
from falkit.steps.base import Check, StepOptions
from falkit.steps.talos import NodeFacts, TalosFacts, plan_talos
from falkit.ui.widgets import CheckList, Table, fmt_number, text_table

LONG_REASON = ("the new NIC takes effect only after a reboot of the VM, which interrupts the workloads "
               "running on this node for about a minute; drain it first if it carries single-replica volumes")


def _plan() -> Plan:
    return Plan("vms", (
        Change("create", "vm", "talos-worker-02", new="VMID 202", reason="worker"),
        Change("create", "vm", "talos-worker-03", new="VMID 203", reason="worker"),
        Change("update", "vm-config", "talos-cp-01", "net0", "virtio=52:54:00:10:30:10", "virtio=52:54:00:10:10:10",
               disruptive=True, reason=LONG_REASON),
        Change("delete", "vm", "old-vm", destructive=True, reason="gone from the spec"),
        Change("action", "vm", "talos-cp-01", "reboot", reason="pending NIC change"),
    ))


def test_plan_summary_line_and_symbols():
    plan = _plan()
    assert plan.summary() == "2 to add, 1 to change, 1 to destroy, 1 to run"
    assert Plan("x", (Change("create", "a", "b"),)).summary() == "1 to add, 0 to change, 0 to destroy"
    text = str(plan)
    assert text.splitlines()[0] == "plan vms: 5 change(s): 2 to add, 1 to change, 1 to destroy, 1 to run"
    assert [line.strip()[0] for line in text.splitlines()[1:6]] == ["+", "+", "~", "-", ">"]
    assert LONG_REASON in text  # the reason in full, not cut at 70 characters
    assert repr(plan) == text and "Change(op=" not in repr(plan)


def test_plan_html_left_aligned_full_reasons():
    html = _plan()._repr_html_()
    assert "text-align: left" in html and "table.falkit-plan" in html
    assert "2 to add" in html and "1 to change" in html and "1 to destroy" in html and "1 to run" in html
    assert LONG_REASON in html
    symbols = re.findall(r"<td class='falkit-sym'[^>]*>([^<]*)</td>", html)
    assert symbols == ["+", "+", "~", "-", "&gt;"]
    assert "nothing to change" in Plan("vms")._repr_html_()


OLD_WORKER = [{"version": "v1alpha1", "machine": {
    "type": "worker", "token": "old-machine-token-0123456789abcdef", "kernel": {"modules": [{"name": "iscsi_tcp"}]},
    "network": {"hostname": "talos-worker-01", "interfaces": [{"interface": "eth0", "addresses": ["10.30.0.11/24"]}]}},
    "cluster": {"network": {"cni": {"name": "flannel"}}}}]


def test_talos_config_change_shows_a_yaml_diff_without_secrets(fal):
    bundle = new_secrets()
    nodes = {"talos-worker-01": NodeFacts("talos-worker-01", "10.10.0.11", "10.30.0.11", False, tuple(OLD_WORKER))}
    plan = plan_talos(fal, TalosFacts(bundle, True, True, nodes, True, True, True), StepOptions())
    change = next(c for c in plan.changes if c.kind == "talos-config")
    diff = change.yaml_diff()
    assert diff.startswith("--- talos-config talos-worker-01 (now)\n+++ talos-config talos-worker-01 (planned)")
    assert "-    - name: iscsi_tcp" in diff and "+    - name: nvme_tcp" in diff
    assert re.search(r"^\+ +- 10\.10\.0\.11/24$", diff, re.M) and re.search(r"^- +- 10\.30\.0\.11/24$", diff, re.M)
    # the machine token differs; its value is not shown
    assert f"\n-  token: '{REDACTED}'\n" in diff and f"\n+  token: '{REDACTED} (changed)'\n" in diff
    shown = diff + str(plan) + plan._repr_html_()
    secrets = [bundle.data["secrets"]["bootstraptoken"], "old-machine-token-0123456789abcdef",
               *(v for v in bundle.data["certs"]["os"].values() if v)]
    assert all(s not in shown for s in secrets)
    assert "PRIVATE KEY" not in shown and "BEGIN CERTIFICATE" not in shown
    # the table points to the diff instead of showing digests
    assert change.diff_cells() == {"old": "(YAML diff below)", "new": "(YAML diff below)"}
    assert change.old not in plan._repr_html_() and "<pre class='falkit-yaml-diff'>" in plan._repr_html_()


def test_helm_values_and_object_spec_diffs():
    values = Change("update", "helm-release", "kube-system/cilium", "values", "1.16.5", "1.16.5",
                    data={"yaml": ({"kubeProxyReplacement": False, "k8sClientRateLimit": {"qps": 5}},
                                   {"kubeProxyReplacement": True, "k8sClientRateLimit": {"qps": 10}})})
    d = values.yaml_diff()
    lines = d.splitlines()
    assert {"-kubeProxyReplacement: false", "+kubeProxyReplacement: true", "-  qps: 5", "+  qps: 10"} <= set(lines), d
    assert " k8sClientRateLimit:" in lines  # context, unchanged
    assert values.diff_cells() == {"old": "1.16.5", "new": "1.16.5"}  # a short value stays in the table
    spec = Change("update", "k8s-object", "CiliumLoadBalancerIPPool/lb-pool", "spec",
                  {"blocks": [{"start": "10.10.0.20", "stop": "10.10.0.29"}]},
                  {"blocks": [{"start": "10.10.0.20", "stop": "10.10.0.39"}]})
    assert "-  stop: 10.10.0.29\n+  stop: 10.10.0.39" in spec.yaml_diff()
    created = Change("create", "helm-release", "openebs/openebs", new="openebs 4.1", data={"yaml": (None, {"a": 1})})
    assert created.yaml_diff().endswith("+a: 1")
    assert Change("update", "vm-config", "x", "memory", 4096, 8192).yaml_diff() == ""


def test_yaml_diff_redacts_secret_keys():
    before = {"cluster": {"secret": "s3cr3t-value-aaaaaaaa", "ca": {"crt": "Y3J0LW9sZA==", "key": "a2V5"}}, "name": "a"}
    after = {"cluster": {"secret": "s3cr3t-value-aaaaaaaa", "ca": {"crt": "Y3J0LW5ldw==", "key": "a2V5"}}, "name": "b"}
    d = yaml_diff(before, after)
    assert "s3cr3t" not in d and "Y3J0" not in d and "a2V5" not in d
    assert f"-    crt: '{REDACTED}'\n+    crt: '{REDACTED} (changed)'" in d and f"  secret: '{REDACTED}'" in d
    assert yaml_diff(before, before) == ""


def test_numbers_are_formatted():
    assert [fmt_number(x) for x in (166.66666666666666, 550.0, 20000.0, 0.5, 0.123456, 3.14159, 1234.5678, 4.5, 9.0)] == \
        ["166.7", "550", "20,000", "0.5", "0.123", "3.14", "1,235", "4.5", "9"]
    html = Table([{"ceiling": 500 / 3}])._repr_html_()
    assert "166.7" in html and "166.666" not in html
    assert "166.666" not in text_table([{"ceiling": 500 / 3}], ["ceiling"])


def test_checks_echo_once_in_a_kernel(capsys):
    """What a notebook cell ``lab.checks("vms")`` does in IPython: the runbook displays the table and
    returns a CheckList with shown=True; the displayhook's echo of that value outputs nothing."""
    from IPython.core.formatters import DisplayFormatter

    checks = CheckList([Check("vm running", "talos-cp-01", "running", "running", True),
                        Check("vm running", "talos-worker-02", "running", "stopped", False, "start it")],
                       "Checks of vms: 1 ok, 1 failed", shown=True)
    assert isinstance(checks, list) and checks[1].subject == "talos-worker-02"
    fmt = DisplayFormatter()
    first, _ = fmt.format(checks)  # the cell's echo right after the runbook showed the table
    assert first == {}
    assert capsys.readouterr().out == ""
    again, _ = fmt.format(checks)  # a later cell showing ``checks``: the table once more
    assert again == {} and capsys.readouterr().out.startswith("Checks of vms: 1 ok, 1 failed")
    text = repr(checks)
    assert text.startswith("Checks of vms: 1 ok, 1 failed") and "Check(check=" not in text and "FAIL" not in text
    html = checks._repr_html_()
    assert "<table class='falkit-table'>" in html and "FAIL" in html and "background:#fdd" in html


def test_index_page_of_a_failed_run():
    run = {"id": "20261203T084000Z-twin", "lab": "the-fal", "target": "twin", "params": "/x/fal.yaml", "apply": True,
           "options": {"allow_disruptive": True}, "started": "2026-12-03T08:40:00+00:00", "finished": "2026-12-03T08:42:10+00:00",
           "status": "failed", "falkit": {"version": "0.1.0", "commit": "b5a45f4abcde"},
           "notebooks": [
               {"notebook": "10-network", "status": "ok", "duration_s": 3.2, "planned": 2, "applied": 2,
                "findings": {"warning": 5, "error": 1},
                "checks": {"ok": 4, "failed": 0}, "mutating_calls": 3, "report": "10-network.html"},
               {"notebook": "20-vms", "status": "failed", "duration_s": 12.5, "planned": 14, "applied": 3,
                "checks": {"ok": 0, "failed": 0}, "mutating_calls": 9, "report": "20-vms.html"}],
           "remaining": ["20-vms.ipynb", "30-talos.ipynb"],
           "failed": {"notebook": "20-vms", "ename": "StepError", "evalue": "vms: QEMU said no"},
           "resume": "falkit run --resume outputs/20261203T084000Z-twin",
           "totals": {"notebooks_ok": 1, "notebooks_failed": 1, "planned_changes": 16, "applied_changes": 5,
                      "checks_ok": 4, "checks_failed": 0, "mutating_calls": 12, "duration_s": 15.7}}
    html = render_index(run)
    assert "<title>falkit run 20261203T084000Z-twin: the-fal on the twin</title>" in html
    for text in ("2026-12-03 08:40:00 UTC", "0.1.0 (commit b5a45f4abcde)", "the-fal", "allow_disruptive=True",
                 "StepError: vms: QEMU said no", "falkit run --resume outputs/20261203T084000Z-twin",
                 "30-talos.ipynb", "12 mutating API call(s)"):
        assert text in html, text
    rows = re.findall(r"<tr class='(\w+)'>(.*?)</tr>", html)
    assert [r[0] for r in rows] == ["ok", "failed"]
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[0][1])]
    assert cells == ["10-network", "ok", "3.2 s", "2", "2", "4", "0", "3", "1 error, 5 warning", "10-network.html"]
    assert "<a href='20-vms.html'>" in html
    assert report_title("20-vms", "the-fal", "2026-12-03T08:40:05+00:00") == "20-vms · the-fal · 2026-12-03 08:40:05 UTC"


@pytest.fixture
def fal():
    from helpers import FAL

    from falkit.model.spec import load_spec

    return load_spec(FAL)


def test_host_budget_chart_names_each_resource_once(fal):
    from falkit.model.design import design_of
    from falkit.runbook.charts import host_budget_chart

    fig = host_budget_chart(fal, design_of(fal))
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:2] == ["RAM (GB)", "vCPU"] and len(titles) == len(set(titles))
    axes = [fig.layout[k] for k in fig.layout if k.startswith("xaxis")]
    assert len(axes) == len(titles) and all(ax.showticklabels is False for ax in axes)  # not again under the bar


def test_a_git_file_change_shows_the_manifests_own_diff(tmp_path):
    """A change made in the GitOps checkout (Traefik's service.yaml: MetalLB's annotation out,
    Cilium's in) is shown as the file's unified diff, not as a list of every annotation field."""
    from falkit.render.gitops import GitEdit
    from falkit.steps.ownership import GitChange

    before = ("apiVersion: v1\nkind: Service\nmetadata:\n  name: traefik  # the ingress\n  annotations:\n"
              "    metallb.universe.tf/loadBalancerIPs: 10.30.0.100\nspec:\n  type: LoadBalancer\n")
    after = before.replace("metallb.universe.tf/loadBalancerIPs: 10.30.0.100", "lbipam.cilium.io/ips: 10.10.0.80")
    edit = GitEdit("kubernetes/platform/traefik/service.yaml", before, after)
    c = Change("update", "git-file", "kubernetes/platform/traefik/service.yaml", "metadata.annotations",
               "metallb.universe.tf/loadBalancerIPs='10.30.0.100', io.cilium/lb-ipam-ips=None, " * 3,
               "metallb.universe.tf/loadBalancerIPs=None, lbipam.cilium.io/ips='10.10.0.80', " * 3,
               data=GitChange(edit=edit, app="traefik"))
    d = c.yaml_diff()
    assert "-    metallb.universe.tf/loadBalancerIPs: 10.30.0.100" in d.splitlines(), d
    assert "+    lbipam.cilium.io/ips: 10.10.0.80" in d.splitlines(), d
    assert "  name: traefik  # the ingress" in d  # the operator's comment is context, kept
    assert c.diff_cells() == {"old": "(YAML diff below)", "new": "(YAML diff below)"}
    assert "(YAML diff below)" in c.describe() and "io.cilium/lb-ipam-ips=None" not in c.describe()
    assert "+    lbipam.cilium.io/ips: 10.10.0.80" in str(Plan("cilium", (c,)))
