"""A lint for the Kubernetes rendering: the house rules the OpenAPI schema cannot check.

* nothing reachable from outside the cluster: Services are ClusterIP, no ``hostPort``, no
  ``hostNetwork``/``hostPID``;
* containers run as non-root without privilege escalation, with resource requests;
* a default-deny NetworkPolicy, and one policy per component;
* every Secret and ConfigMap a pod mounts is among the manifests, with the key it mounts.

``python -m harness.deploy.manifest_lint DIR`` lints the YAML files of ``outlast render
kubernetes``; each problem names the object and the field.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

COMPONENT = "app.kubernetes.io/component"


def _name(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def _pod_problems(doc: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    where = _name(doc)
    pod = doc["spec"]["template"]["spec"]
    problems = [
        f"{where}: spec.template.spec.{k} must not be set"
        for k in ("hostNetwork", "hostPID")
        if pod.get(k)
    ]
    for index, container in enumerate(pod.get("containers", [])):
        field = f"{where}: containers[{index}]"
        security = container.get("securityContext", {})
        if security.get("runAsNonRoot") is not True:
            problems.append(f"{field}.securityContext.runAsNonRoot must be true")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{field}.securityContext.allowPrivilegeEscalation must be false")
        if not container.get("resources", {}).get("requests"):
            problems.append(f"{field}.resources.requests missing")
        for port in container.get("ports", []):
            if "hostPort" in port:
                problems.append(f"{field}.ports: hostPort {port['hostPort']} publishes on the node")
    mounted = {
        m.get("name"): m.get("subPath")
        for c in pod.get("containers", [])
        for m in c.get("volumeMounts", [])
    }
    for volume in pod.get("volumes", []):
        for kind, key in (("Secret", "secret"), ("ConfigMap", "configMap")):
            if key not in volume:
                continue
            ref = volume[key].get("secretName") or volume[key].get("name")
            target = objects.get((kind, ref))
            if target is None:
                problems.append(
                    f"{where}: volume {volume['name']} needs {kind} {ref}, not among the manifests"
                )
                continue
            sub = mounted.get(volume["name"])
            if sub and sub not in target.get("data", {}):
                problems.append(f"{where}: {kind} {ref} has no key {sub}")
    return problems


def lint_manifests(documents: list[dict[str, Any]]) -> list[str]:
    """Every problem found, one line each (empty: clean)."""
    objects = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    problems: list[str] = []
    policies = [d for d in documents if d["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"].get("podSelector") == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny:
        problems.append(
            "NetworkPolicy: no default-deny policy (podSelector {} denying Ingress and Egress)"
        )
    covered = {p["spec"]["podSelector"].get("matchLabels", {}).get(COMPONENT) for p in policies}
    for doc in documents:
        kind = doc["kind"]
        if kind == "Service" and doc["spec"].get("type", "ClusterIP") != "ClusterIP":
            problems.append(
                f"{_name(doc)}: type {doc['spec']['type']} exposes it outside the cluster"
            )
        if kind in ("Deployment", "StatefulSet"):
            problems += _pod_problems(doc, objects)
            component = doc["spec"]["template"]["metadata"]["labels"].get(COMPONENT)
            if component not in covered:
                problems.append(f"{_name(doc)}: no NetworkPolicy selects component {component}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m harness.deploy.manifest_lint DIR", file=sys.stderr)
        return 2
    documents = [
        doc
        for path in sorted(Path(argv[0]).glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    problems = lint_manifests(documents)
    for problem in problems:
        print(problem)
    print(f"{len(documents)} manifests, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
