"""The ``outlast`` command: reference components, the connector CLI and the harness."""

from __future__ import annotations

import click

from reference.lazy_group import LazyGroup

serve = LazyGroup(
    name="serve",
    help="Run one component of the reference system (or the fault proxy) in the foreground.",
    lazy={
        "controlplane": "reference.controlplane.cli:serve_command",
        "broker": "reference.broker.cli:serve_command",
        "edge": "reference.edge.cli:serve_command",
        "anycast": "reference.anycast.cli:serve_command",
        "origin": "reference.origin.cli:serve_command",
        "faultproxy": "harness.faultproxy.cli:serve_command",
    },
)

main = LazyGroup(
    name="outlast",
    help="Outlast: prove that a tunnelled service survives its control plane going away.",
    lazy={
        "controlplane": "reference.controlplane.cli:admin_group",
        "tunnel": "reference.connector.cli:tunnel_group",
        "stack": "harness.stack.cli:stack_group",
        "report": "harness.report.cli:report_command",
        "run": "harness.run_cli:run_command",
        "compose": "harness.compose.cli:compose_group",
        "swarm": "harness.swarm.cli:swarm_group",
        "render": "harness.deploy.cli:render_command",
        "explore": "harness.explore.cli:explore_command",
        "scenarios": "harness.scenario.cli:scenarios_command",
    },
)
main.add_command(serve)
main = click.version_option(package_name="outlast")(main)

if __name__ == "__main__":
    main()
