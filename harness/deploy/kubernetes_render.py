"""The plan as Kubernetes manifests (``kubectl apply -f DIR`` or the kubernetes backend).

* a **StatefulSet** per service with a volume (broker, control plane, edges, connectors: one
  PersistentVolumeClaim per volume), a **Deployment** per stateless one (fault proxy, anycast
  front, origin); readiness from the plan's health command (exec);
* a ClusterIP **Service** per component, named as in Compose, so ``toxiproxy:10001`` and
  ``edge-ams:7845`` resolve the same way; it exposes the published ports and every port a
  fault-proxy link dials;
* a **Secret** per secret file (keys, tokens, credentials) and a **ConfigMap** per config file
  (certificates, the public key, mosquitto.conf), mounted file by file at the plan's paths;
* **NetworkPolicies** that keep the stack internal: everything in the namespace is denied, then
  each pod may talk only to pods sharing one of its plan networks (so, as in Compose, a service
  reaches another only through the fault proxy), plus cluster DNS;
* placement as a *preferred* node affinity on ``outlast.pop`` / ``outlast.role`` node labels (a
  cluster without those labels still schedules everything).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from harness.compose import plan as shape
from harness.deploy.model import DeploymentPlan, Service

PART_OF = "outlast"
COMPONENT_LABEL = "app.kubernetes.io/component"
DEFAULT_IMAGE = "outlast:offline"
RUN_AS = 10001


def _labels(service: str) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": PART_OF, COMPONENT_LABEL: service}


def _meta(name: str, namespace: str, component: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    meta["labels"] = _labels(component) if component else {"app.kubernetes.io/part-of": PART_OF}
    return meta


def service_ports(plan: DeploymentPlan, service: Service) -> list[tuple[int, str]]:
    """(port, protocol) a component listens on for others: published ports, the ports fault-proxy
    links dial, and (for the fault proxy) every link's listen port."""
    ports: set[tuple[int, str]] = {
        (p.container, proto.upper()) for p in service.ports for proto in p.protocols
    }
    for link in shape.links():
        host, _, port = link.upstream.rpartition(":")
        if host == service.name:
            ports.add((int(port), "TCP"))
        if service.image == "faultproxy":
            ports.add((link.listen_port, "TCP"))
    for pop in plan.pops:  # the anycast front dials each PoP's visitor and DNS ports
        if service.name == f"edge-{pop}":
            ports |= {
                (shape.EDGE_VISITOR_PORT, "TCP"),
                (shape.EDGE_DNS_PORT, "UDP"),
                (shape.EDGE_DNS_PORT, "TCP"),
            }
    if service.needs_tunnel or service.name == "origin":
        ports |= {(p.container, "TCP") for p in service.ports}
    return sorted(ports)


def _port_name(port: int, protocol: str) -> str:
    return f"{protocol.lower()}-{port}"


def _affinity(service: Service) -> dict[str, Any]:
    if service.placement.startswith("pop:"):
        key, value = "outlast.pop", service.placement.removeprefix("pop:")
    else:
        key, value = "outlast.role", service.placement
    term = {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}
    return {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": term}]
        }
    }


def _container(plan: DeploymentPlan, service: Service, image: str) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [
        {"name": m.volume, "mountPath": m.target, **({"readOnly": True} if m.read_only else {})}
        for m in service.mounts
        if m.volume not in plan.file_volumes
    ]
    mounts += [
        {"name": f"file-{f.name}", "mountPath": f.target, "subPath": f.name, "readOnly": True}
        for f in service.files
    ]
    container: dict[str, Any] = {
        "name": service.name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(service.command),
        "env": [
            {"name": key, "value": value}
            for key, value in (("OUTLAST_HOME", shape.HOME_DIR), *service.environment)
        ],
        "ports": [
            {"containerPort": port, "protocol": protocol, "name": _port_name(port, protocol)}
            for port, protocol in service_ports(plan, service)
        ],
        "volumeMounts": mounts,
        "securityContext": {
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }
    if service.health:
        container["readinessProbe"] = {
            "exec": {"command": list(service.health)},
            "periodSeconds": 2,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        }
    return container


def _pod_spec(plan: DeploymentPlan, service: Service, image: str) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = []
    for f in service.files:
        source = (
            {"secret": {"secretName": f.name, "defaultMode": 0o440}}
            if f.secret
            else {"configMap": {"name": f.name, "defaultMode": 0o444}}
        )
        volumes.append({"name": f"file-{f.name}", **source})
    spec: dict[str, Any] = {
        "securityContext": {"fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "affinity": _affinity(service),
        "terminationGracePeriodSeconds": 10,
        "containers": [_container(plan, service, image)],
    }
    if volumes:
        spec["volumes"] = volumes
    return spec


def workload(plan: DeploymentPlan, service: Service, namespace: str, image: str) -> dict[str, Any]:
    """The StatefulSet (volumes) or Deployment (none) of ``service``."""
    selector = {"matchLabels": _labels(service.name)}
    template = {
        "metadata": {"labels": _labels(service.name)},
        "spec": _pod_spec(plan, service, image),
    }
    claims = [m.volume for m in service.mounts if m.volume not in plan.file_volumes]
    if not claims:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(service.name, namespace, service.name),
            "spec": {
                "replicas": 1,
                "selector": selector,
                "strategy": {"type": "Recreate"},
                "template": template,
            },
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(service.name, namespace, service.name),
        "spec": {
            "replicas": 1,
            "serviceName": service.name,
            "selector": selector,
            "template": template,
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": claim, "labels": _labels(service.name)},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "256Mi"}},
                    },
                }
                for claim in claims
            ],
        },
    }


def cluster_service(plan: DeploymentPlan, service: Service, namespace: str) -> dict[str, Any]:
    """The ClusterIP Service naming ``service`` inside the namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(service.name, namespace, service.name),
        "spec": {
            "type": "ClusterIP",
            "selector": _labels(service.name),
            "ports": [
                {
                    "name": _port_name(port, protocol),
                    "port": port,
                    "targetPort": port,
                    "protocol": protocol,
                }
                for port, protocol in service_ports(plan, service)
            ],
        },
    }


def network_policies(plan: DeploymentPlan, namespace: str) -> list[dict[str, Any]]:
    """Deny everything in the namespace, then allow each pair of services sharing a network."""
    daemons = plan.daemons
    policies: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("outlast-default-deny", namespace),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        }
    ]
    for service in daemons:
        peers = sorted(
            {
                other.name
                for other in daemons
                if other.name != service.name and set(other.networks) & set(service.networks)
            }
        )
        selectors = [{"podSelector": {"matchLabels": _labels(p)}} for p in peers]
        dns = {
            "to": [{"namespaceSelector": {}}],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        }
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta(f"{service.name}-peers", namespace, service.name),
                "spec": {
                    "podSelector": {"matchLabels": _labels(service.name)},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": selectors}] if selectors else [],
                    "egress": [*([{"to": selectors}] if selectors else []), dns],
                },
            }
        )
    return policies


def file_objects(
    plan: DeploymentPlan, namespace: str, files: dict[str, Path]
) -> list[dict[str, Any]]:
    """A Secret or ConfigMap per generated file present in ``files``."""
    objects: list[dict[str, Any]] = []
    for generated in plan.files:
        path = files.get(generated.name)
        if path is None:
            continue
        data = Path(path).read_bytes()
        meta = _meta(generated.name, namespace)
        meta["annotations"] = {"outlast.dev/description": generated.description}
        if generated.secret:
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": meta,
                    "type": "Opaque",
                    "data": {generated.name: base64.b64encode(data).decode()},
                }
            )
        else:
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": meta,
                    "data": {generated.name: data.decode()},
                }
            )
    return objects


def render_kubernetes(
    plan: DeploymentPlan,
    files: dict[str, Path],
    *,
    namespace: str = "outlast",
    image: str = DEFAULT_IMAGE,
    with_connectors: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Manifests by file name: ``00-namespace``, ``10-files`` (what ``files`` holds),
    ``20-network-policies``, ``30-services``, ``40-workloads``."""
    daemons = [s for s in plan.daemons if with_connectors or not s.needs_tunnel]
    return {
        "00-namespace": [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {"app.kubernetes.io/part-of": PART_OF}},
            }
        ],
        "10-files": file_objects(plan, namespace, files),
        "20-network-policies": network_policies(plan, namespace),
        "30-services": [cluster_service(plan, s, namespace) for s in daemons],
        "40-workloads": [workload(plan, s, namespace, image) for s in daemons],
    }
