"""API keys: stored as sha256 hex digests, shown in plain text once, at creation.

Keys look like `rvb_<43 url-safe characters>` (256 random bits), so hashing
them without a salt is safe: there is nothing to guess from the digest.
"""

import hashlib
import hmac
import secrets

import asyncpg

from reverb_store.ids import new_id

KEY_PREFIX = "rvb_"


def hash_key(key: str) -> str:
    """The sha256 hex digest a key is stored as."""
    return hashlib.sha256(key.encode()).hexdigest()


async def create_api_key(connection: asyncpg.Connection, name: str) -> tuple[str, str]:
    """Create a key; return (its id, the plain-text key). Only the digest is stored."""
    key_id = new_id()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    await connection.execute(
        "INSERT INTO reverb.api_keys (id, name, key_hash) VALUES ($1, $2, $3)",
        key_id,
        name,
        hash_key(key),
    )
    return key_id, key


async def revoke_api_key(connection: asyncpg.Connection, key_id: str) -> bool:
    """Revoke a key by id; False if there is no such live key."""
    status = await connection.execute(
        "UPDATE reverb.api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        key_id,
    )
    return bool(status == "UPDATE 1")


async def verify(connection: asyncpg.Connection, key: str) -> str | None:
    """The id of the live key `key` is, or None."""
    digest = hash_key(key)
    row = await connection.fetchrow(
        "SELECT id, key_hash FROM reverb.api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        digest,
    )
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        return None
    return str(row["id"])
