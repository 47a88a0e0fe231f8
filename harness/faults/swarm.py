"""Faults through the orchestrator (the swarm backend): whole nodes and Swarm tasks.

* ``node_down``: the node's engine container is killed (the node and every task on it vanish;
  Swarm marks the node down); heal starts it again, the engine rejoins and Swarm restarts its
  tasks;
* ``node_drain``: the node's availability becomes ``drain`` (Swarm moves or, for pinned
  services, parks its tasks); heal sets it ``active``;
* ``task_kill``: the running task's container of a component is SIGKILLed; Swarm's restart
  policy starts a new task (instantaneous: nothing to heal);
* ``network_partition``: the node drops every packet to and from the other nodes (iptables in
  its own network namespace, overlay traffic included); heal removes those rules.

Targets of the node faults are worker names: ``pop-<pop>`` or ``connectors``. On the local and
Compose backends, which have no nodes, ``node_down`` kills the components the plan places on that
node (``edge-<pop>``; the connectors and the origin) and starts them at heal, so a catalogue with
``pop-host-failure`` runs everywhere; the other three need the swarm backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.faults.base import FaultContext, FaultError, register

PARTITION_COMMENT = "outlast-partition"


def _swarm(ctx: FaultContext) -> Any:
    from harness.stack.swarm import SwarmStack

    if not isinstance(ctx.stack, SwarmStack):
        raise FaultError("this fault acts on swarm nodes and tasks: run with --backend swarm")
    return ctx.stack


def _is_swarm(ctx: FaultContext) -> bool:
    from harness.stack.swarm import SwarmStack

    return isinstance(ctx.stack, SwarmStack)


def components_on_node(ctx: FaultContext, node: str) -> list[str]:
    """The components the deployment plan places on worker ``node``."""
    topology = ctx.stack.topology
    if node.startswith("pop-") and node.removeprefix("pop-") in topology.pops:
        return [f"edge-{node.removeprefix('pop-')}"]
    if node == "connectors":
        connectors = [c for t in topology.tunnels for c in t.connectors]
        return [*connectors, *(["origin"] if topology.has_origin_process else [])]
    raise FaultError(f"no node {node!r} (have: pop-<pop> for each PoP, connectors)")


@register
@dataclass
class NodeDown:
    """A whole node dies (its engine container killed) and comes back at heal."""

    kind: ClassVar[str] = "node_down"
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    _done: bool = False

    async def inject(self, ctx: FaultContext) -> None:
        if _is_swarm(ctx):
            await _swarm(ctx).node_down(self.target)
        else:
            for component in components_on_node(ctx, self.target):
                await ctx.stack.kill(component)
        self._done = True

    async def heal(self, ctx: FaultContext) -> None:
        if not self._done:
            return
        if _is_swarm(ctx):
            await _swarm(ctx).node_up(self.target)
        else:
            for component in components_on_node(ctx, self.target):
                await ctx.stack.start(component)
        self._done = False


@register
@dataclass
class NodeDrain(NodeDown):
    """The node is drained (Swarm takes its tasks away) and made active again at heal."""

    kind: ClassVar[str] = "node_drain"

    async def inject(self, ctx: FaultContext) -> None:
        await _swarm(ctx).node_availability(self.target, "drain")
        self._done = True

    async def heal(self, ctx: FaultContext) -> None:
        if self._done:
            await _swarm(ctx).node_availability(self.target, "active")
            self._done = False


@register
@dataclass
class TaskKill:
    """The component's running task is SIGKILLed; Swarm starts a new one."""

    kind: ClassVar[str] = "task_kill"
    target: str
    params: dict[str, Any] = field(default_factory=dict)

    async def inject(self, ctx: FaultContext) -> None:
        await _swarm(ctx).task_kill(self.target)

    async def heal(self, ctx: FaultContext) -> None:
        return None


@register
@dataclass
class NetworkPartition(NodeDown):
    """The node is cut off from every other node until heal."""

    kind: ClassVar[str] = "network_partition"

    async def inject(self, ctx: FaultContext) -> None:
        await _swarm(ctx).partition(self.target, True)
        self._done = True

    async def heal(self, ctx: FaultContext) -> None:
        if self._done:
            await _swarm(ctx).partition(self.target, False)
            self._done = False
