"""API keys of the HTTP server: created, verified, revoked; only a hash of a secret is kept.

A key reads ``fid_<key id>_<secret>``. Verification compares SHA-256 digests in constant
time, and an unknown key id costs the same comparison, so timing tells nothing about keys.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from ..errors import LedgerError
from .clock import now_text

if TYPE_CHECKING:
    from .handle import Ledger

#: API keys read ``fid_<key id>_<secret>``; roles, each allowing what the ones before it do.
API_KEY_PREFIX = "fid"
API_ROLES = ("read", "write")


def create_api_key(ledger: Ledger, role: str, name: str | None = None) -> str:
    """A new API key; the whole key is returned once and only a hash of its secret is kept."""
    if role not in API_ROLES:
        raise LedgerError(f"role must be one of {', '.join(API_ROLES)}, not {role!r}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with ledger.write() as connection:
        connection.execute(
            "INSERT INTO api_keys (key_id, secret_sha256, role, name, created_at) VALUES (?, ?, ?, ?, ?)",
            (key_id, hashlib.sha256(secret.encode()).hexdigest(), role, name, now_text()))
    return f"{API_KEY_PREFIX}_{key_id}_{secret}"


def api_key_role(ledger: Ledger, key: str) -> str | None:
    """The role of a valid, unrevoked key; None otherwise. The secret's hash is compared in
    constant time, and an unknown key id costs the same comparison."""
    known = ledger.remembered("api_keys", dict)
    if key in known:
        return known[key]  # verified before, and nothing changed in the ledger since
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    row = ledger.db.execute("SELECT secret_sha256, role FROM api_keys WHERE key_id = ? AND revoked_at IS NULL",
                          (key_id,)).fetchone() if prefix == API_KEY_PREFIX else None
    presented = hashlib.sha256(secret.encode()).hexdigest()
    matches = hmac.compare_digest(presented, row[0] if row else "0" * 64)
    if not (row and matches):
        return None
    known[key] = row[1]
    return row[1]


def revoke_api_key(ledger: Ledger, key_id: str) -> None:
    with ledger.write() as connection:
        if not connection.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                                  (now_text(), key_id)).rowcount:
            raise LedgerError(f"no active API key {key_id!r}")


def api_keys(ledger: Ledger) -> list[tuple]:
    """(key id, role, name, created at, revoked at) of every key; never a secret."""
    return ledger.db.execute("SELECT key_id, role, name, created_at, revoked_at FROM api_keys "
                           "ORDER BY created_at").fetchall()
