"""Topic filter matching and validation (MQTT 3.1.1 section 4.7)."""

from __future__ import annotations

import pytest

from reference.broker.topics import (
    InvalidTopic,
    is_valid_topic_filter,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)

MATCH_TABLE = [
    # filter, topic, matches
    ("sport/tennis/player1", "sport/tennis/player1", True),
    ("sport/tennis/player1", "sport/tennis/player2", False),
    ("sport/tennis/player1/#", "sport/tennis/player1", True),  # '#' includes the parent
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("sport/#", "sports", False),
    ("#", "sport/tennis", True),
    ("#", "/leading", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),  # '+' matches an empty level
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+/tennis/#", "sport/tennis/x", True),
    ("a/+/c", "a/b/c", True),
    ("a/+/c", "a//c", True),
    ("a/+/c", "a/b/d", False),
    ("a/b", "a/b/", False),
    ("A/b", "a/b", False),  # case sensitive
    ("outlast/v1/tunnels/+", "outlast/v1/tunnels/c1744f8b", True),
    ("outlast/v1/dns/#", "outlast/v1/dns/zone/record", True),
    # '$' topics are not matched by a leading wildcard, but are by an explicit first level.
    ("#", "$SYS/broker/uptime", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/broker/uptime", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("a/#", "a/$b", True),  # '$' only matters in the first level
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCH_TABLE)
def test_topic_matching_table(topic_filter: str, topic: str, expected: bool) -> None:
    validate_topic_filter(topic_filter)
    validate_topic_name(topic)
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("topic_filter", ["#", "+", "a/#", "+/+", "/", "a//b", "+/b/#", "$SYS/#"])
def test_valid_filters(topic_filter: str) -> None:
    assert is_valid_topic_filter(topic_filter)


@pytest.mark.parametrize("topic_filter", ["", "a/#/b", "a#", "#/", "a/b+", "+a/b", "a/##", "a\x00"])
def test_invalid_filters(topic_filter: str) -> None:
    assert not is_valid_topic_filter(topic_filter)
    with pytest.raises(InvalidTopic):
        validate_topic_filter(topic_filter)


@pytest.mark.parametrize("topic", ["", "a/+", "a/#", "+", "a\x00b"])
def test_invalid_topic_names(topic: str) -> None:
    with pytest.raises(InvalidTopic):
        validate_topic_name(topic)
