"""MQTT topic names, topic filters and matching (``+`` one level, ``#`` the rest).

Rules (MQTT 3.1.1 section 4.7): levels are separated by ``/`` and may be empty; ``+`` must fill
a whole level; ``#`` must be the whole last level and also matches the parent (``a/#`` matches
``a``); topics whose first character is ``$`` are not matched by a filter starting with a wildcard.
"""

from __future__ import annotations


class InvalidTopic(ValueError):
    """A topic name or topic filter breaks the MQTT rules."""


def validate_topic_name(topic: str) -> None:
    """Raise InvalidTopic unless ``topic`` may be published to."""
    if not topic:
        raise InvalidTopic("a topic name must not be empty")
    if "+" in topic or "#" in topic:
        raise InvalidTopic(f"topic name {topic!r} contains a wildcard (+ or #)")
    if "\x00" in topic:
        raise InvalidTopic("a topic name must not contain U+0000")


def validate_topic_filter(topic_filter: str) -> None:
    """Raise InvalidTopic unless ``topic_filter`` may be subscribed to."""
    if not topic_filter:
        raise InvalidTopic("a topic filter must not be empty")
    if "\x00" in topic_filter:
        raise InvalidTopic("a topic filter must not contain U+0000")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise InvalidTopic(f"filter {topic_filter!r}: '#' must be the whole last level")
        if "+" in level and level != "+":
            raise InvalidTopic(f"filter {topic_filter!r}: '+' must be a whole level")


def is_valid_topic_filter(topic_filter: str) -> bool:
    """True when ``topic_filter`` passes :func:`validate_topic_filter`."""
    try:
        validate_topic_filter(topic_filter)
    except InvalidTopic:
        return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether the (valid) ``topic_filter`` matches the (valid) topic name ``topic``."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)
