"""The pytest plugin, as a user's test suite sees it (entry point, fixtures, fault cleanup)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
def test_traffic_survives_control_plane_outage(outlast_stack, outlast_faults, outlast_traffic):
    assert outlast_traffic.get("/hello").status_code == 200
    with outlast_faults.component_down("controlplane"):
        result = outlast_traffic.measure(seconds=2, rate=20)
    assert result.ok >= 20 and result.failed == 0, result


def test_a_cut_tunnel_is_seen_by_the_probe(outlast_stack, outlast_faults, outlast_traffic):
    with outlast_faults.link_down("conn-ams"), outlast_faults.link_down("conn-fra"):
        result = outlast_traffic.measure(seconds=3, rate=20)
    assert result.failed > 0 and result.availability < 0.5, result


def test_faults_were_undone_for_the_next_test(outlast_stack, outlast_traffic):
    result = outlast_traffic.measure(seconds=1, rate=20)
    assert result.failed == 0, result
"""


@pytest.mark.timeout(180)
def test_user_suite_runs_with_the_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=3)
