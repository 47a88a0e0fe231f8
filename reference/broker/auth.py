"""Broker users, passwords and ACLs, the same for every backend (docs/broker.md).

Two files, both mode 0600 in a state directory:

- the **users file** (``broker-users.json``) is what a broker holds: each user's mosquitto-style
  PBKDF2-SHA512 password hash (``$7$...``) and the topic patterns it may publish and subscribe
  to. ``outlast serve broker --users-file`` reads it; the embedded broker checks CONNECT,
  PUBLISH and SUBSCRIBE against it, and mosquitto is given a ``password_file`` and an
  ``acl_file`` made from it.
- a **credential file** (``<user>.credentials.json``: username and password) is what one client
  holds, passed by path (``--broker-credentials FILE``).

The Outlast policy (:func:`outlast_users`): the control plane alone publishes configuration and
reads the edges' events and snapshots; an edge ``edge-<pop>`` subscribes to configuration and
publishes only its own event and snapshot topics (its MQTT will is its snapshot topic).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reference import config_topics
from reference.broker.topics import topic_matches
from reference.files import atomic_write

CONTROLPLANE_USER = "controlplane"
USERS_FILE_NAME = "broker-users.json"
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$
SALT_BYTES = 12  # as mosquitto_passwd
CONFIG_FILTERS = (
    config_topics.TUNNELS_FILTER,
    config_topics.ZONES_FILTER,
    config_topics.DNS_FILTER,
)


class BrokerAuthError(ValueError):
    """A users or credential file is missing or malformed; ``code`` names the failure."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def edge_username(pop: str) -> str:
    """The broker user of the edge PoP ``pop``."""
    return f"edge-{pop}"


def credential_file_name(username: str) -> str:
    return f"{username}.credentials.json"


# ------------------------------------------------------------------------------ passwords


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``password`` in mosquitto's ``$7$`` format (PBKDF2-HMAC-SHA512, base64 salt and hash)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (
        f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}"
        f"${base64.b64encode(digest).decode()}"
    )


def password_matches(encoded: str, password: str) -> bool:
    """True when ``password`` hashes to ``encoded`` (constant-time compare)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return hmac.compare_digest(digest, expected)


# ------------------------------------------------------------------------------ ACLs


def filter_within(topic_filter: str, pattern: str) -> bool:
    """True when every topic ``topic_filter`` can match is also matched by ``pattern``."""
    wanted, allowed = topic_filter.split("/"), pattern.split("/")
    for index, level in enumerate(allowed):
        if level == "#":
            return True
        if index >= len(wanted):
            return False
        if wanted[index] == "#":
            return False
        if level != "+" and wanted[index] != level:
            return False
    return len(wanted) == len(allowed)


@dataclass(frozen=True)
class BrokerUser:
    """One user as the broker knows it: password hash and topic patterns."""

    username: str
    password_hash: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def may_publish(self, topic: str) -> bool:
        return any(topic_matches(pattern, topic) for pattern in self.publish)

    def may_subscribe(self, topic_filter: str) -> bool:
        return any(filter_within(topic_filter, pattern) for pattern in self.subscribe)


class BrokerUsers:
    """The users file: who may connect, with which password, to do what.

    ``bind_client_ids`` (the default): a client's MQTT client id is its username, so a user
    cannot connect with another client's id and take its session over. The embedded broker
    refuses any other id (CONNACK 5); mosquitto is run with ``use_username_as_clientid``.
    """

    def __init__(self, users: Iterable[BrokerUser], *, bind_client_ids: bool = True) -> None:
        self.users = {user.username: user for user in users}
        self.bind_client_ids = bind_client_ids

    def authenticate(self, username: str | None, password: bytes | None) -> BrokerUser | None:
        """The user when ``username``/``password`` are right, else None (anonymous: None)."""
        user = self.users.get(username or "")
        if user is None or password is None:
            return None
        try:
            text = password.decode()
        except UnicodeDecodeError:
            return None
        return user if password_matches(user.password_hash, text) else None

    @classmethod
    def load(cls, path: Path) -> BrokerUsers:
        try:
            data = json.loads(Path(path).read_text())
            users = [
                BrokerUser(
                    str(entry["username"]),
                    str(entry["password_hash"]),
                    tuple(str(p) for p in entry["publish"]),
                    tuple(str(p) for p in entry["subscribe"]),
                )
                for entry in data["users"]
            ]
            bind_client_ids = data.get("bind_client_ids", True)
            if not isinstance(bind_client_ids, bool):
                raise TypeError(f"bind_client_ids must be true or false, not {bind_client_ids!r}")
        except OSError as exc:
            raise BrokerAuthError(
                "broker_users_unreadable",
                f"cannot read the broker users file {path} ({exc.strerror}); "
                "`outlast stack up` writes it in the stack's state directory",
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise BrokerAuthError(
                "broker_users_malformed",
                f"{path} is not a broker users file ({type(exc).__name__}: {exc}); expected "
                '{"users": [{"username", "password_hash", "publish", "subscribe"}], '
                '"bind_client_ids": true}',
            ) from None
        return cls(users, bind_client_ids=bind_client_ids)

    def write(self, path: Path) -> None:
        data = {
            "users": [
                {
                    "username": user.username,
                    "password_hash": user.password_hash,
                    "publish": list(user.publish),
                    "subscribe": list(user.subscribe),
                }
                for user in self.users.values()
            ],
            "bind_client_ids": self.bind_client_ids,
        }
        atomic_write(Path(path), json.dumps(data, indent=2).encode() + b"\n", mode=0o600)

    def mosquitto_password_file(self) -> str:
        """mosquitto's ``password_file`` text (``user:$7$...`` lines)."""
        return "".join(f"{u.username}:{u.password_hash}\n" for u in self.users.values())

    def mosquitto_acl_file(self) -> str:
        """mosquitto's ``acl_file`` text: ``topic write`` for publish, ``topic read`` for
        subscribe patterns, per user; anything not listed is denied."""
        lines: list[str] = []
        for user in self.users.values():
            lines.append(f"user {user.username}")
            lines += [f"topic write {pattern}" for pattern in user.publish]
            lines += [f"topic read {pattern}" for pattern in user.subscribe]
            lines.append("")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ clients


@dataclass(frozen=True)
class BrokerCredential:
    """What one MQTT client holds: its username and password."""

    username: str
    password: str

    def write(self, path: Path) -> None:
        text = json.dumps({"username": self.username, "password": self.password}) + "\n"
        atomic_write(Path(path), text.encode(), mode=0o600)

    @classmethod
    def load(cls, path: Path) -> BrokerCredential:
        try:
            data = json.loads(Path(path).read_text())
            credential = cls(str(data["username"]), str(data["password"]))
        except OSError as exc:
            raise BrokerAuthError(
                "broker_credentials_unreadable",
                f"cannot read the broker credentials file {path} ({exc.strerror}); "
                "`outlast stack up` writes one per client in the stack's state directory",
            ) from None
        except (ValueError, KeyError, TypeError):
            raise BrokerAuthError(
                "broker_credentials_malformed",
                f"{path} is not a broker credentials file; expected "
                '{"username": "...", "password": "..."}',
            ) from None
        return credential

    def __repr__(self) -> str:  # never print the password
        return f"BrokerCredential(username={self.username!r})"


def controlplane_rules() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(publish, subscribe) patterns of the control plane."""
    subscribe = (config_topics.EVENTS_FILTER, config_topics.EDGE_CONNECTIONS_FILTER)
    return CONFIG_FILTERS, subscribe


def edge_rules(pop: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(publish, subscribe) patterns of the edge PoP ``pop``."""
    publish = (config_topics.events_topic(pop), config_topics.edge_connections_topic(pop))
    return publish, CONFIG_FILTERS


def new_user(
    username: str, publish: Iterable[str], subscribe: Iterable[str]
) -> tuple[BrokerUser, BrokerCredential]:
    """A user with a fresh random password, and the matching client credential."""
    password = secrets.token_urlsafe(24)
    user = BrokerUser(username, hash_password(password), tuple(publish), tuple(subscribe))
    return user, BrokerCredential(username, password)


def outlast_users(pops: Iterable[str]) -> tuple[BrokerUsers, dict[str, BrokerCredential]]:
    """The Outlast policy: the control plane and one user per edge PoP, fresh passwords."""
    made = [new_user(CONTROLPLANE_USER, *controlplane_rules())]
    made += [new_user(edge_username(pop), *edge_rules(pop)) for pop in pops]
    users = BrokerUsers(user for user, _ in made)
    return users, {credential.username: credential for _, credential in made}


@dataclass(frozen=True)
class BrokerAuthFiles:
    """Where :func:`provision_broker_auth` wrote the users file and each client's credential."""

    users_file: Path
    credentials: dict[str, Path]

    def credential_for(self, username: str) -> Path:
        return self.credentials[username]


def provision_broker_auth(directory: Path, pops: Iterable[str]) -> BrokerAuthFiles:
    """Write the users file and one credential file per client (all 0600) in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    users, credentials = outlast_users(pops)
    users_file = directory / USERS_FILE_NAME
    users.write(users_file)
    paths: dict[str, Path] = {}
    for username, credential in credentials.items():
        path = directory / credential_file_name(username)
        credential.write(path)
        paths[username] = path
    return BrokerAuthFiles(users_file, paths)
