"""API keys: stored as sha256 hex digests, shown in plain text once, at creation.

Keys look like `rvb_<43 url-safe characters>` (256 random bits), so hashing
them without a salt is safe: there is nothing to guess from the digest.

A key holds scopes (`SCOPES`), each allowing one kind of call; a host key holds
the `host` scope alone and is bound to the apps it may register. Every change
to reverb.api_keys sends a NOTIFY on `CHANNEL` (migration 0005), so gateways can
drop what they cached at once.
"""

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from reverb_store.ids import new_id

KEY_PREFIX = "rvb_"
# The NOTIFY channel of every change to reverb.api_keys.
CHANNEL = "reverb_api_keys"

INGEST = "ingest"
READ = "read"
OPERATE = "operate"
ADMIN = "admin"
HOST = "host"
SCOPES = (INGEST, READ, OPERATE, ADMIN, HOST)
# The scopes of a key created without naming any.
DEFAULT_SCOPES = (INGEST,)
# The scopes migration 0005 gave the keys made before it.
MIGRATED_SCOPES = (INGEST, READ, OPERATE, ADMIN)


class InvalidKeyScopes(ValueError):
    """Scopes or apps a key cannot have."""


@dataclass(frozen=True, slots=True)
class ApiKeyGrant:
    """What a live key may do: its scopes and, for a host key, the apps it may register."""

    key_id: str
    scopes: frozenset[str]
    apps: frozenset[str]


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    name: str
    scopes: tuple[str, ...]
    apps: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    """The sha256 hex digest a key is stored as."""
    return hashlib.sha256(key.encode()).hexdigest()


def check_scopes(scopes: Iterable[str], apps: Iterable[str]) -> tuple[list[str], list[str]]:
    """The scopes and apps, in order without repeats; InvalidKeyScopes if a key cannot hold
    them: unknown scopes, `host` with any other scope or without apps, apps without `host`."""
    chosen = list(dict.fromkeys(scopes)) or list(DEFAULT_SCOPES)
    bound = list(dict.fromkeys(apps))
    unknown = [scope for scope in chosen if scope not in SCOPES]
    if unknown:
        raise InvalidKeyScopes(f"unknown scope {unknown[0]!r}: choose among {', '.join(SCOPES)}")
    if HOST in chosen:
        if len(chosen) > 1:
            raise InvalidKeyScopes("a host key holds the host scope alone")
        if not bound:
            raise InvalidKeyScopes("a host key must be bound to at least one app")
        if any(not app for app in bound):
            raise InvalidKeyScopes("an app id must not be empty")
    elif bound:
        raise InvalidKeyScopes("only a host key is bound to apps")
    return chosen, bound


async def create_api_key(
    connection: asyncpg.Connection,
    name: str,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    apps: Iterable[str] = (),
) -> tuple[str, str]:
    """Create a key; return (its id, the plain-text key). Only the digest is stored.

    InvalidKeyScopes if the scopes and apps do not fit (`check_scopes`)."""
    chosen, bound = check_scopes(scopes, apps)
    key_id = new_id()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    await connection.execute(
        "INSERT INTO reverb.api_keys (id, name, key_hash, scopes, apps)"
        " VALUES ($1, $2, $3, $4, $5)",
        key_id,
        name,
        hash_key(key),
        chosen,
        bound,
    )
    return key_id, key


async def revoke_api_key(connection: asyncpg.Connection, key_id: str) -> bool:
    """Revoke a key by id; False if there is no such live key."""
    status = await connection.execute(
        "UPDATE reverb.api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        key_id,
    )
    return bool(status == "UPDATE 1")


async def list_api_keys(
    connection: asyncpg.Connection, *, revoked: bool = False
) -> list[ApiKeyRecord]:
    """The keys (live ones only, unless `revoked`), oldest first; never their digests."""
    rows = await connection.fetch(
        "SELECT id, name, scopes, apps, created_at, revoked_at FROM reverb.api_keys"
        " WHERE $1 OR revoked_at IS NULL ORDER BY created_at, id",
        revoked,
    )
    return [
        ApiKeyRecord(
            id=row["id"],
            name=row["name"],
            scopes=tuple(row["scopes"]),
            apps=tuple(row["apps"]),
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )
        for row in rows
    ]


async def verify(connection: asyncpg.Connection, key: str) -> ApiKeyGrant | None:
    """What the live key `key` may do, or None when it is no live key."""
    digest = hash_key(key)
    row = await connection.fetchrow(
        "SELECT id, key_hash, scopes, apps FROM reverb.api_keys"
        " WHERE key_hash = $1 AND revoked_at IS NULL",
        digest,
    )
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        return None
    return ApiKeyGrant(str(row["id"]), frozenset(row["scopes"]), frozenset(row["apps"]))
