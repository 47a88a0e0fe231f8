"""SQLite storage (WAL) of accounts, users, zones, tunnels, DNS records and the audit log.

Every mutating method is one transaction: the change, its configuration version and its audit
entry are committed together or not at all. The configuration version is one counter
(``meta.config_version``) incremented on every change of a tunnel, zone or DNS record; the row
keeps the version of its last change, so "everything newer than N" is a simple query.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference.config_topics import TUNNEL_SUFFIX, tunnel_target
from reference.controlplane.errors import ApiProblem, ErrorCode
from reference.controlplane.models import (
    ADMIN,
    SYSTEM,
    Account,
    Actor,
    AuditEntry,
    DnsRecord,
    LegacyTunnel,
    Tunnel,
    User,
    Zone,
    utc_now,
)
from reference.legacy_tunnel import legacy_tunnel_id
from reference.tunnel_auth import derive_verifier

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE,
    token_issued_at TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rolled_tokens (
    token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, rolled_at TEXT NOT NULL,
    reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memberships (
    account_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (account_id, user_id));
CREATE TABLE IF NOT EXISTS zones (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tunnels (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, name TEXT NOT NULL, secret BLOB NOT NULL,
    created_at TEXT NOT NULL, deleted_at TEXT, updated_at TEXT NOT NULL,
    version INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS tunnels_live_name
    ON tunnels (account_id, name) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS dns_records (
    id TEXT PRIMARY KEY, zone_id TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL,
    content TEXT NOT NULL, tunnel_id TEXT, proxied INTEGER NOT NULL, ttl INTEGER NOT NULL,
    created_at TEXT NOT NULL, modified_at TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS dns_live_name ON dns_records (zone_id, name) WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS audit_logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, account_id TEXT NOT NULL,
    at TEXT NOT NULL, action TEXT NOT NULL, result INTEGER NOT NULL, actor_type TEXT NOT NULL,
    actor_id TEXT NOT NULL, actor_email TEXT NOT NULL, resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL, metadata TEXT NOT NULL, dedupe_key TEXT UNIQUE);
CREATE INDEX IF NOT EXISTS audit_by_account ON audit_logs (account_id, seq);
CREATE TABLE IF NOT EXISTS legacy_tunnels (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, zone_id TEXT NOT NULL, hostname TEXT NOT NULL,
    verifier TEXT NOT NULL, created_at TEXT NOT NULL, registered_at TEXT NOT NULL,
    version INTEGER NOT NULL, UNIQUE (zone_id, hostname));
"""

ADDRESS_TYPES = ("A", "AAAA", "CNAME")


def hash_token(token: str) -> str:
    """What the store keeps of an API token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token() -> str:
    return "olt_" + secrets.token_urlsafe(32)


def _hex_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class BootstrapResult:
    account_id: str
    zone_id: str
    user_id: str
    api_token: str


@dataclass(frozen=True)
class RolledToken:
    user_id: str
    email: str
    api_token: str
    accounts: list[str]


@dataclass(frozen=True)
class Page:
    """A page of a list plus the numbers for ``result_info``."""

    items: list[Any]
    page: int
    per_page: int
    total_count: int

    def result_info(self) -> dict[str, int]:
        return {
            "page": self.page,
            "per_page": self.per_page,
            "count": len(self.items),
            "total_count": self.total_count,
        }


@dataclass(frozen=True)
class LegacyRegistration:
    """What a legacy registration found or created: the tunnel and its DNS record."""

    tunnel: LegacyTunnel
    record: DnsRecord
    created_tunnel: bool
    created_record: bool

    @property
    def changed(self) -> bool:
        return self.created_tunnel or self.created_record


@dataclass(frozen=True)
class ConfigObject:
    """One retained configuration message: its topic kind, ids and payload."""

    version: int
    kind: str  # "tunnel" | "zone" | "dns"
    payload: dict[str, Any]


class Store:
    """The control plane's database (``DIR/controlplane.db``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        new = not self.path.exists()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if new:
            os.chmod(self.path, 0o600)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('config_version', '0')")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ versions and audit

    def config_version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'config_version'").fetchone()
        return int(row["value"])

    @staticmethod
    def _next_version(db: sqlite3.Connection) -> int:
        row = db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version' "
            "RETURNING value"
        ).fetchone()
        return int(row["value"])

    @staticmethod
    def _audit(
        db: sqlite3.Connection,
        account_id: str,
        action: str,
        actor: Actor,
        resource_type: str,
        resource_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        when: str | None = None,
        dedupe_key: str | None = None,
    ) -> bool:
        cursor = db.execute(
            "INSERT OR IGNORE INTO audit_logs (id, account_id, at, action, result, actor_type, "
            "actor_id, actor_email, resource_type, resource_id, metadata, dedupe_key) "
            "VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(uuid.uuid4()),
                account_id,
                when or utc_now(),
                action,
                actor.type,
                actor.id,
                actor.email,
                resource_type,
                resource_id,
                json.dumps(metadata or {}),
                dedupe_key,
            ),
        )
        return cursor.rowcount == 1

    def record_event(
        self,
        account_id: str,
        action: str,
        actor: Actor,
        resource_type: str,
        resource_id: str,
        metadata: dict[str, Any],
        *,
        when: str | None = None,
        dedupe_key: str | None = None,
    ) -> bool:
        """Add one audit entry (ignored when ``dedupe_key`` was seen); True if it was added."""
        with self._tx() as db:
            return self._audit(
                db,
                account_id,
                action,
                actor,
                resource_type,
                resource_id,
                metadata,
                when=when,
                dedupe_key=dedupe_key,
            )

    def list_audit(
        self,
        account_id: str,
        *,
        action: str | None = None,
        resource_id: str | None = None,
        since: str | None = None,
        descending: bool = True,
        page: int = 1,
        per_page: int = 100,
    ) -> Page:
        where = ["account_id = ?"]
        args: list[Any] = [account_id]
        if action is not None:
            where.append("action = ?")
            args.append(action)
        if resource_id is not None:
            where.append("resource_id = ?")
            args.append(resource_id)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        clause = " AND ".join(where)
        total = self._db.execute(f"SELECT COUNT(*) FROM audit_logs WHERE {clause}", args)
        order = "DESC" if descending else "ASC"
        rows = self._db.execute(
            f"SELECT * FROM audit_logs WHERE {clause} ORDER BY seq {order} LIMIT ? OFFSET ?",
            [*args, per_page, (page - 1) * per_page],
        ).fetchall()
        return Page(
            [AuditEntry.from_row(r) for r in rows], page, per_page, int(total.fetchone()[0])
        )

    # ------------------------------------------------------------------ users and tokens

    def authenticate(self, token: str) -> User:
        """The user owning ``token``; ApiProblem UNKNOWN_TOKEN or TOKEN_ROLLED otherwise."""
        digest = hash_token(token)
        row = self._db.execute("SELECT * FROM users WHERE token_hash = ?", (digest,)).fetchone()
        if row is not None:
            return User(id=row["id"], email=row["email"], token_issued_at=row["token_issued_at"])
        rolled = self._db.execute(
            "SELECT * FROM rolled_tokens WHERE token_hash = ?", (digest,)
        ).fetchone()
        if rolled is not None:
            raise ApiProblem(
                ErrorCode.TOKEN_ROLLED,
                f"this API token was rolled at {rolled['rolled_at']} ({rolled['reason']}) and is "
                "no longer valid; run `outlast tunnel login --force` again with your new token "
                "to get a fresh cert.pem",
            )
        raise ApiProblem(
            ErrorCode.UNKNOWN_TOKEN,
            "unknown API token; check the token you were given, then run `outlast tunnel login` "
            "with it",
        )

    def user_account_ids(self, user_id: str) -> set[str]:
        rows = self._db.execute(
            "SELECT account_id FROM memberships WHERE user_id = ?", (user_id,)
        ).fetchall()
        return {r["account_id"] for r in rows}

    def _user_by_email(self, db: sqlite3.Connection, email: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM users WHERE email = ?", (email,)).fetchone()
        if row is None:
            raise ApiProblem(ErrorCode.USER_NOT_FOUND, f"no user with email {email!r}")
        return row

    def _roll(
        self,
        db: sqlite3.Connection,
        user: sqlite3.Row,
        reason: str,
        actor: Actor,
        extra_accounts: tuple[str, ...] = (),
    ) -> RolledToken:
        token = new_api_token()
        now = utc_now()
        db.execute(
            "INSERT OR REPLACE INTO rolled_tokens (token_hash, user_id, rolled_at, reason) "
            "VALUES (?, ?, ?, ?)",
            (user["token_hash"], user["id"], now, reason),
        )
        db.execute(
            "UPDATE users SET token_hash = ?, token_issued_at = ? WHERE id = ?",
            (hash_token(token), now, user["id"]),
        )
        accounts = sorted(
            r["account_id"]
            for r in db.execute(
                "SELECT account_id FROM memberships WHERE user_id = ?", (user["id"],)
            )
        )
        for account_id in sorted(set(accounts) | set(extra_accounts)):
            self._audit(
                db,
                account_id,
                "Token roll",
                actor,
                "user",
                user["id"],
                {"email": user["email"], "reason": reason},
            )
        return RolledToken(user["id"], user["email"], token, accounts)

    def roll_token(self, email: str, reason: str, actor: Actor = ADMIN) -> RolledToken:
        """Replace the user's API token; the old one then answers TOKEN_ROLLED."""
        with self._tx() as db:
            return self._roll(db, self._user_by_email(db, email), reason, actor)

    def roll_token_of(self, user: User, reason: str) -> RolledToken:
        with self._tx() as db:
            row = self._user_by_email(db, user.email)
            return self._roll(db, row, reason, Actor("user", user.id, user.email))

    def remove_member(self, account_name: str, email: str) -> RolledToken:
        """Remove a user from an account and roll their token (permissions changed)."""
        with self._tx() as db:
            account = db.execute(
                "SELECT * FROM accounts WHERE name = ?", (account_name,)
            ).fetchone()
            if account is None:
                raise ApiProblem(ErrorCode.ACCOUNT_NOT_FOUND, f"no account named {account_name!r}")
            user = self._user_by_email(db, email)
            removed = db.execute(
                "DELETE FROM memberships WHERE account_id = ? AND user_id = ?",
                (account["id"], user["id"]),
            ).rowcount
            if not removed:
                raise ApiProblem(
                    ErrorCode.USER_NOT_FOUND,
                    f"user {email!r} is not a member of account {account_name!r}",
                )
            self._audit(
                db, account["id"], "Remove member", ADMIN, "user", user["id"], {"email": email}
            )
            return self._roll(
                db,
                user,
                f"removed from account {account_name}",
                ADMIN,
                extra_accounts=(account["id"],),
            )

    def bootstrap(self, account_name: str, zone_name: str, email: str) -> BootstrapResult:
        """Create (or reuse) account, zone and user; the user gets a new API token.

        A user that already exists has their token rolled: the store never keeps tokens, so a
        second bootstrap cannot hand out the old one.
        """
        with self._tx() as db:
            now = utc_now()
            account = db.execute(
                "SELECT * FROM accounts WHERE name = ?", (account_name,)
            ).fetchone()
            if account is None:
                account_id = _hex_id()
                db.execute(
                    "INSERT INTO accounts (id, name, created_at) VALUES (?, ?, ?)",
                    (account_id, account_name, now),
                )
            else:
                account_id = account["id"]
            zone = db.execute("SELECT * FROM zones WHERE name = ?", (zone_name,)).fetchone()
            if zone is None:
                zone_id = _hex_id()
                db.execute(
                    "INSERT INTO zones (id, account_id, name, created_at, version) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (zone_id, account_id, zone_name, now, self._next_version(db)),
                )
                self._audit(db, account_id, "Zone add", ADMIN, "zone", zone_id, {"name": zone_name})
            elif zone["account_id"] != account_id:
                raise ApiProblem(
                    ErrorCode.ZONE_CONFLICT,
                    f"zone {zone_name!r} already belongs to another account",
                )
            else:
                zone_id = zone["id"]
            user = db.execute("SELECT * FROM users WHERE email = ?", (email,)).fetchone()
            if user is None:
                user_id = _hex_id()
                token = new_api_token()
                db.execute(
                    "INSERT INTO users (id, email, token_hash, token_issued_at, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (user_id, email, hash_token(token), now, now),
                )
            else:
                user_id = user["id"]
            added = db.execute(
                "INSERT OR IGNORE INTO memberships (account_id, user_id) VALUES (?, ?)",
                (account_id, user_id),
            ).rowcount
            if added:
                self._audit(db, account_id, "Add member", ADMIN, "user", user_id, {"email": email})
            if user is not None:
                token = self._roll(db, user, "bootstrap issued a new token", ADMIN).api_token
            return BootstrapResult(account_id, zone_id, user_id, token)

    def accounts(self, account_ids: set[str]) -> list[Account]:
        if not account_ids:
            return []
        marks = ",".join("?" * len(account_ids))
        rows = self._db.execute(
            f"SELECT * FROM accounts WHERE id IN ({marks}) ORDER BY name", sorted(account_ids)
        )
        return [Account(id=r["id"], name=r["name"], created_at=r["created_at"]) for r in rows]

    # ------------------------------------------------------------------ zones

    def _zone_from_row(self, row: sqlite3.Row) -> Zone:
        return Zone(
            id=row["id"],
            account_id=row["account_id"],
            account_name=row["account_name"],
            name=row["name"],
            created_at=row["created_at"],
            version=row["version"],
        )

    def get_zone(self, zone_id: str) -> Zone | None:
        row = self._db.execute(
            "SELECT z.*, a.name AS account_name FROM zones z JOIN accounts a "
            "ON a.id = z.account_id WHERE z.id = ?",
            (zone_id,),
        ).fetchone()
        return self._zone_from_row(row) if row else None

    def zones_of_accounts(self, account_ids: set[str], name: str | None = None) -> list[Zone]:
        if not account_ids:
            return []
        marks = ",".join("?" * len(account_ids))
        sql = (
            "SELECT z.*, a.name AS account_name FROM zones z JOIN accounts a "
            f"ON a.id = z.account_id WHERE z.account_id IN ({marks})"
        )
        args: list[Any] = sorted(account_ids)
        if name is not None:
            sql += " AND z.name = ?"
            args.append(name)
        return [self._zone_from_row(r) for r in self._db.execute(sql + " ORDER BY z.name", args)]

    # ------------------------------------------------------------------ tunnels

    @staticmethod
    def _tunnel_from_row(row: sqlite3.Row) -> Tunnel:
        return Tunnel(
            id=row["id"],
            account_id=row["account_id"],
            name=row["name"],
            secret=bytes(row["secret"]),
            created_at=row["created_at"],
            deleted_at=row["deleted_at"],
            updated_at=row["updated_at"],
            version=row["version"],
        )

    def create_tunnel(
        self, account_id: str, name: str, secret: bytes, limit: int, actor: Actor
    ) -> Tunnel:
        with self._tx() as db:
            live = db.execute(
                "SELECT COUNT(*) FROM tunnels WHERE account_id = ? AND deleted_at IS NULL",
                (account_id,),
            ).fetchone()[0]
            if live >= limit:
                raise ApiProblem(
                    ErrorCode.TUNNEL_LIMIT_REACHED,
                    f"this account has reached its limit of {limit} tunnels; delete tunnels "
                    "you no longer use (`outlast tunnel delete NAME`) before creating more",
                )
            clash = db.execute(
                "SELECT id FROM tunnels WHERE account_id = ? AND name = ? AND deleted_at IS NULL",
                (account_id, name),
            ).fetchone()
            if clash is not None:
                raise ApiProblem(
                    ErrorCode.TUNNEL_NAME_CONFLICT,
                    f"a tunnel named {name!r} already exists in this account (id "
                    f"{clash['id']}); choose another name, or delete that tunnel first",
                )
            tunnel_id = str(uuid.uuid4())
            now = utc_now()
            db.execute(
                "INSERT INTO tunnels (id, account_id, name, secret, created_at, deleted_at, "
                "updated_at, version) VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
                (tunnel_id, account_id, name, secret, now, now, self._next_version(db)),
            )
            self._audit(db, account_id, "Create tunnel", actor, "tunnel", tunnel_id, {"name": name})
            row = db.execute("SELECT * FROM tunnels WHERE id = ?", (tunnel_id,)).fetchone()
            return self._tunnel_from_row(row)

    def get_tunnel(self, account_id: str, tunnel_id: str) -> Tunnel | None:
        row = self._db.execute(
            "SELECT * FROM tunnels WHERE id = ? AND account_id = ?", (tunnel_id, account_id)
        ).fetchone()
        return self._tunnel_from_row(row) if row else None

    def find_tunnel(self, tunnel_id: str) -> Tunnel | None:
        """A tunnel by id whatever its account (for edge events)."""
        row = self._db.execute("SELECT * FROM tunnels WHERE id = ?", (tunnel_id,)).fetchone()
        return self._tunnel_from_row(row) if row else None

    def list_tunnels(
        self,
        account_id: str,
        *,
        is_deleted: bool | None = None,
        name: str | None = None,
        tunnel_id: str | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> Page:
        where = ["account_id = ?"]
        args: list[Any] = [account_id]
        if is_deleted is True:
            where.append("deleted_at IS NOT NULL")
        elif is_deleted is False:
            where.append("deleted_at IS NULL")
        if name is not None:
            where.append("name = ?")
            args.append(name)
        if tunnel_id is not None:
            where.append("id = ?")
            args.append(tunnel_id)
        clause = " AND ".join(where)
        total = int(
            self._db.execute(f"SELECT COUNT(*) FROM tunnels WHERE {clause}", args).fetchone()[0]
        )
        rows = self._db.execute(
            f"SELECT * FROM tunnels WHERE {clause} ORDER BY created_at, id LIMIT ? OFFSET ?",
            [*args, per_page, (page - 1) * per_page],
        ).fetchall()
        return Page([self._tunnel_from_row(r) for r in rows], page, per_page, total)

    def delete_tunnel(self, tunnel: Tunnel, actor: Actor, *, cascade: bool) -> Tunnel:
        """Mark ``tunnel`` deleted (a tombstone is published); its DNS records stay."""
        with self._tx() as db:
            now = utc_now()
            changed = db.execute(
                "UPDATE tunnels SET deleted_at = ?, updated_at = ?, version = ? "
                "WHERE id = ? AND deleted_at IS NULL",
                (now, now, self._next_version(db), tunnel.id),
            ).rowcount
            if not changed:
                raise ApiProblem(
                    ErrorCode.TUNNEL_ALREADY_DELETED, f"tunnel {tunnel.id} has already been deleted"
                )
            self._audit(
                db,
                tunnel.account_id,
                "Delete tunnel",
                actor,
                "tunnel",
                tunnel.id,
                {"name": tunnel.name, "cascade": cascade},
            )
            row = db.execute("SELECT * FROM tunnels WHERE id = ?", (tunnel.id,)).fetchone()
            return self._tunnel_from_row(row)

    def tunnel_ids_in_account(self, account_id: str) -> set[str]:
        rows = self._db.execute("SELECT id FROM tunnels WHERE account_id = ?", (account_id,))
        return {r["id"] for r in rows}

    # ------------------------------------------------------------------ DNS records

    @staticmethod
    def _record_from_row(row: sqlite3.Row) -> DnsRecord:
        return DnsRecord(
            id=row["id"],
            zone_id=row["zone_id"],
            zone_name=row["zone_name"],
            type=row["type"],
            name=row["name"],
            content=row["content"],
            tunnel_id=row["tunnel_id"],
            proxied=bool(row["proxied"]),
            ttl=row["ttl"],
            created_at=row["created_at"],
            modified_at=row["modified_at"],
            deleted=bool(row["deleted"]),
            version=row["version"],
        )

    _RECORD_SELECT = (
        "SELECT r.*, z.name AS zone_name FROM dns_records r JOIN zones z ON z.id = r.zone_id"
    )

    def _live_records(self, db: sqlite3.Connection, zone_id: str, name: str) -> list[DnsRecord]:
        rows = db.execute(
            f"{self._RECORD_SELECT} WHERE r.zone_id = ? AND r.name = ? AND r.deleted = 0",
            (zone_id, name),
        ).fetchall()
        return [self._record_from_row(r) for r in rows]

    def list_records(
        self,
        zone_id: str,
        *,
        name: str | None = None,
        type: str | None = None,
        content: str | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> Page:
        where = ["r.zone_id = ?", "r.deleted = 0"]
        args: list[Any] = [zone_id]
        for column, value in (("name", name), ("type", type), ("content", content)):
            if value is not None:
                where.append(f"r.{column} = ?")
                args.append(value)
        clause = " AND ".join(where)
        total = int(
            self._db.execute(f"SELECT COUNT(*) FROM dns_records r WHERE {clause}", args).fetchone()[
                0
            ]
        )
        rows = self._db.execute(
            f"{self._RECORD_SELECT} WHERE {clause} ORDER BY r.name, r.type, r.created_at "
            "LIMIT ? OFFSET ?",
            [*args, per_page, (page - 1) * per_page],
        ).fetchall()
        return Page([self._record_from_row(r) for r in rows], page, per_page, total)

    def get_record(self, zone_id: str, record_id: str) -> DnsRecord | None:
        row = self._db.execute(
            f"{self._RECORD_SELECT} WHERE r.zone_id = ? AND r.id = ? AND r.deleted = 0",
            (zone_id, record_id),
        ).fetchone()
        return self._record_from_row(row) if row else None

    def _tunnel_of_target(self, db: sqlite3.Connection, zone: Zone, content: str) -> str | None:
        """The tunnel a CNAME ``content`` routes to, which must be one of the zone's account's
        tunnels (named or legacy); None for content outside the tunnel suffix. ApiProblem
        FOREIGN_TUNNEL_TARGET otherwise, the same whether the tunnel is another account's or
        does not exist, so the answer tells nothing about other accounts."""
        suffix = "." + TUNNEL_SUFFIX
        if not content.endswith(suffix):
            return None
        candidate = content[: -len(suffix)]
        for table in ("tunnels", "legacy_tunnels"):
            row = db.execute(
                f"SELECT id FROM {table} WHERE id = ? AND account_id = ?",
                (candidate, zone.account_id),
            ).fetchone()
            if row is not None:
                return str(row["id"])
        raise ApiProblem(
            ErrorCode.FOREIGN_TUNNEL_TARGET,
            f"CNAME target {content} is not a tunnel of the account that owns zone {zone.name}; "
            "a hostname can only be routed to your own account's tunnels (see `outlast tunnel "
            "list`, then `outlast tunnel route dns`)",
        )

    def _insert_record(
        self,
        db: sqlite3.Connection,
        zone: Zone,
        type: str,
        name: str,
        content: str,
        proxied: bool,
        ttl: int,
        tunnel_id: str | None,
    ) -> DnsRecord:
        record_id = _hex_id()
        now = utc_now()
        db.execute(
            "INSERT INTO dns_records (id, zone_id, type, name, content, tunnel_id, proxied, ttl, "
            "created_at, modified_at, deleted, version) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (
                record_id,
                zone.id,
                type,
                name,
                content,
                tunnel_id,
                int(proxied),
                ttl,
                now,
                now,
                self._next_version(db),
            ),
        )
        row = db.execute(f"{self._RECORD_SELECT} WHERE r.id = ?", (record_id,)).fetchone()
        return self._record_from_row(row)

    def _delete_record(
        self, db: sqlite3.Connection, record: DnsRecord, actor: Actor, account_id: str
    ) -> None:
        db.execute(
            "UPDATE dns_records SET deleted = 1, modified_at = ?, version = ? WHERE id = ?",
            (utc_now(), self._next_version(db), record.id),
        )
        self._audit(
            db,
            account_id,
            "DNS record delete",
            actor,
            "dns_record",
            record.id,
            {"name": record.name, "type": record.type, "content": record.content},
        )

    @staticmethod
    def _conflicts(existing: list[DnsRecord], type: str, content: str) -> list[DnsRecord]:
        """Records that cannot coexist with a new ``type`` record at the same name."""
        if type == "CNAME":
            return list(existing)
        if type in ("A", "AAAA"):
            return [
                r
                for r in existing
                if r.type == "CNAME" or (r.type == type and r.content == content)
            ]
        return [
            r for r in existing if r.type == "CNAME" or (r.type == type and r.content == content)
        ]

    def create_record(
        self,
        zone: Zone,
        type: str,
        name: str,
        content: str,
        proxied: bool,
        ttl: int,
        actor: Actor,
    ) -> DnsRecord:
        with self._tx() as db:
            clashes = self._conflicts(self._live_records(db, zone.id, name), type, content)
            if clashes:
                kinds = ", ".join(f"{r.type} {r.content}" for r in clashes)
                raise ApiProblem(
                    ErrorCode.RECORD_EXISTS,
                    f"An A, AAAA or CNAME record with that host already exists ({name}: "
                    f"{kinds}); delete it first",
                )
            tunnel_id = self._tunnel_of_target(db, zone, content) if type == "CNAME" else None
            record = self._insert_record(db, zone, type, name, content, proxied, ttl, tunnel_id)
            action = "CNAME add" if type == "CNAME" else "DNS record add"
            self._audit(
                db,
                zone.account_id,
                action,
                actor,
                "dns_record",
                record.id,
                {"name": name, "type": type, "content": content, "tunnel_id": tunnel_id},
            )
            return record

    def delete_record(self, zone: Zone, record_id: str, actor: Actor) -> DnsRecord:
        with self._tx() as db:
            row = db.execute(
                f"{self._RECORD_SELECT} WHERE r.zone_id = ? AND r.id = ? AND r.deleted = 0",
                (zone.id, record_id),
            ).fetchone()
            if row is None:
                raise ApiProblem(
                    ErrorCode.RECORD_NOT_FOUND,
                    f"no DNS record {record_id} in zone {zone.name}",
                )
            record = self._record_from_row(row)
            self._delete_record(db, record, actor, zone.account_id)
            return record

    def route_dns(
        self, zone: Zone, tunnel: Tunnel, hostname: str, overwrite: bool, actor: Actor
    ) -> tuple[str, DnsRecord]:
        """Point ``hostname`` at ``tunnel`` with a CNAME; return ("new"|"updated"|"unchanged")."""
        target = tunnel_target(tunnel.id)
        with self._tx() as db:
            existing = [
                r for r in self._live_records(db, zone.id, hostname) if r.type in ADDRESS_TYPES
            ]
            if len(existing) == 1 and existing[0].routes_to(tunnel.id):
                return "unchanged", existing[0]
            if existing and not overwrite:
                kinds = ", ".join(f"{r.type} {r.content}" for r in existing)
                raise ApiProblem(
                    ErrorCode.RECORD_EXISTS,
                    f"An A, AAAA or CNAME record with that host already exists ({hostname}: "
                    f"{kinds}); pass --overwrite-dns to replace it",
                )
            for record in existing:
                self._delete_record(db, record, actor, zone.account_id)
            record = self._insert_record(db, zone, "CNAME", hostname, target, True, 1, tunnel.id)
            result = "updated" if existing else "new"
            self._audit(
                db,
                zone.account_id,
                "CNAME add",
                actor,
                "dns_record",
                record.id,
                {"name": hostname, "content": target, "tunnel_id": tunnel.id, "cname": result},
            )
            return result, record

    # ------------------------------------------------------------------ configuration stream

    def config_since(self, version: int) -> list[ConfigObject]:
        """Every tunnel, zone and DNS record changed after ``version``, oldest change first."""
        objects: list[ConfigObject] = []
        for row in self._db.execute("SELECT * FROM tunnels WHERE version > ?", (version,)):
            tunnel = self._tunnel_from_row(row)
            objects.append(
                ConfigObject(
                    tunnel.version,
                    "tunnel",
                    {
                        "version": tunnel.version,
                        "tunnel_id": tunnel.id,
                        "account_tag": tunnel.account_id,
                        "name": tunnel.name,
                        "verifier": derive_verifier(tunnel.secret, tunnel.id),
                        "deleted": tunnel.deleted,
                        "updated_at": tunnel.updated_at,
                    },
                )
            )
        for row in self._db.execute("SELECT * FROM zones WHERE version > ?", (version,)):
            objects.append(
                ConfigObject(
                    row["version"],
                    "zone",
                    {
                        "version": row["version"],
                        "zone_id": row["id"],
                        "account_tag": row["account_id"],
                        "name": row["name"],
                        "deleted": False,
                    },
                )
            )
        for row in self._db.execute(f"{self._RECORD_SELECT} WHERE r.version > ?", (version,)):
            objects.append(self._record_object(self._record_from_row(row)))
        for row in self._db.execute("SELECT * FROM legacy_tunnels WHERE version > ?", (version,)):
            objects.append(self._legacy_object(self._legacy_from_row(row)))
        objects.sort(key=lambda o: o.version)
        return objects

    @staticmethod
    def _record_object(record: DnsRecord) -> ConfigObject:
        return ConfigObject(
            record.version,
            "dns",
            {
                "version": record.version,
                "record_id": record.id,
                "zone_id": record.zone_id,
                "zone_name": record.zone_name,
                "type": record.type,
                "name": record.name,
                "content": record.content,
                "tunnel_id": record.tunnel_id,
                "proxied": record.proxied,
                "deleted": record.deleted,
            },
        )

    @staticmethod
    def _legacy_object(tunnel: LegacyTunnel) -> ConfigObject:
        """A legacy tunnel on the tunnel topic: ``kind: legacy`` and its ``hostname``; the
        verifier is random (no user holds a secret), so no named registration can match it."""
        return ConfigObject(
            tunnel.version,
            "tunnel",
            {
                "version": tunnel.version,
                "tunnel_id": tunnel.id,
                "account_tag": tunnel.account_id,
                "name": tunnel.hostname,
                "verifier": tunnel.verifier,
                "deleted": False,
                "updated_at": tunnel.created_at,
                "kind": "legacy",
                "hostname": tunnel.hostname,
            },
        )

    # ------------------------------------------------------------------ legacy tunnels

    @staticmethod
    def _legacy_from_row(row: sqlite3.Row) -> LegacyTunnel:
        return LegacyTunnel(
            id=row["id"],
            account_id=row["account_id"],
            zone_id=row["zone_id"],
            hostname=row["hostname"],
            verifier=row["verifier"],
            created_at=row["created_at"],
            registered_at=row["registered_at"],
            version=row["version"],
        )

    def legacy_tunnel(self, tunnel_id: str) -> LegacyTunnel | None:
        row = self._db.execute("SELECT * FROM legacy_tunnels WHERE id = ?", (tunnel_id,)).fetchone()
        return self._legacy_from_row(row) if row else None

    def register_legacy(
        self, zone: Zone, hostname: str, actor: Actor, metadata: dict[str, Any]
    ) -> LegacyRegistration:
        """Find or create the legacy tunnel of ``hostname`` and its CNAME, in one transaction.

        The caller has checked the hostname (in the zone, not the apex). An A, AAAA or CNAME
        record at the name that does not route to this legacy tunnel is a conflict: a legacy
        registration never replaces a record someone made.
        """
        tunnel_id = legacy_tunnel_id(zone.id, hostname)
        with self._tx() as db:
            now = utc_now()
            row = db.execute("SELECT * FROM legacy_tunnels WHERE id = ?", (tunnel_id,)).fetchone()
            created_tunnel = row is None
            if created_tunnel:
                db.execute(
                    "INSERT INTO legacy_tunnels (id, account_id, zone_id, hostname, verifier, "
                    "created_at, registered_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        tunnel_id,
                        zone.account_id,
                        zone.id,
                        hostname,
                        secrets.token_hex(32),
                        now,
                        now,
                        self._next_version(db),
                    ),
                )
                self._audit(
                    db,
                    zone.account_id,
                    "Create tunnel",
                    actor,
                    "tunnel",
                    tunnel_id,
                    {"name": hostname, "legacy": True, **metadata},
                )
            else:
                db.execute(
                    "UPDATE legacy_tunnels SET registered_at = ? WHERE id = ?", (now, tunnel_id)
                )
            existing = [
                r for r in self._live_records(db, zone.id, hostname) if r.type in ADDRESS_TYPES
            ]
            created_record = False
            if len(existing) == 1 and existing[0].routes_to(tunnel_id):
                record = existing[0]
            elif existing:
                kinds = ", ".join(f"{r.type} {r.content}" for r in existing)
                raise ApiProblem(
                    ErrorCode.RECORD_EXISTS,
                    f"An A, AAAA or CNAME record with that host already exists ({hostname}: "
                    f"{kinds}); a legacy tunnel never replaces DNS records: delete that record, "
                    "choose another --hostname, or run a named tunnel and route it with "
                    "`outlast tunnel route dns --overwrite-dns`",
                )
            else:
                target = tunnel_target(tunnel_id)
                record = self._insert_record(
                    db, zone, "CNAME", hostname, target, True, 1, tunnel_id
                )
                created_record = True
                self._audit(
                    db,
                    zone.account_id,
                    "CNAME add",
                    actor,
                    "dns_record",
                    record.id,
                    {"name": hostname, "content": target, "tunnel_id": tunnel_id, "legacy": True},
                )
            tunnel_row = db.execute(
                "SELECT * FROM legacy_tunnels WHERE id = ?", (tunnel_id,)
            ).fetchone()
            return LegacyRegistration(
                self._legacy_from_row(tunnel_row), record, created_tunnel, created_record
            )

    def legacy_config(self, registration: LegacyRegistration) -> list[ConfigObject]:
        """The configuration payloads of a registration (what the edge routes by)."""
        return [
            self._legacy_object(registration.tunnel),
            self._record_object(registration.record),
        ]

    def legacy_records(self) -> list[tuple[LegacyTunnel, DnsRecord]]:
        """Every legacy tunnel that has a live DNS record routing to it, with the record."""
        rows = self._db.execute(
            f"{self._RECORD_SELECT} JOIN legacy_tunnels l ON l.id = r.tunnel_id "
            "WHERE r.deleted = 0 ORDER BY r.name"
        ).fetchall()
        found = []
        for row in rows:
            record = self._record_from_row(row)
            tunnel = self.legacy_tunnel(str(record.tunnel_id))
            if tunnel is not None:
                found.append((tunnel, record))
        return found

    def expire_legacy_record(
        self, tunnel: LegacyTunnel, record_id: str, reason: str
    ) -> DnsRecord | None:
        """Delete the legacy tunnel's record (a tombstone is published); None if it is gone."""
        with self._tx() as db:
            row = db.execute(
                f"{self._RECORD_SELECT} WHERE r.id = ? AND r.deleted = 0 AND r.tunnel_id = ?",
                (record_id, tunnel.id),
            ).fetchone()
            if row is None:
                return None
            record = self._record_from_row(row)
            db.execute(
                "UPDATE dns_records SET deleted = 1, modified_at = ?, version = ? WHERE id = ?",
                (utc_now(), self._next_version(db), record.id),
            )
            self._audit(
                db,
                tunnel.account_id,
                "DNS record delete",
                SYSTEM,
                "dns_record",
                record.id,
                {
                    "name": record.name,
                    "type": record.type,
                    "content": record.content,
                    "legacy": True,
                    "reason": reason,
                },
            )
            return record
