"""Server settings: defaults, then ``FIDELIS_*`` environment variables, then the caller's."""
from __future__ import annotations

from collections.abc import Mapping

#: Every setting the server reads, with its default.
DEFAULTS: dict[str, object] = {
    # the ledger file (required): FIDELIS_LEDGER=/srv/chain.db
    "LEDGER": None,
    # bodies larger than these are refused with 413 before they are read
    "MAX_JSON_BYTES": 64 * 1024,
    "MAX_BATCH_BYTES": 8 * 1024 * 1024,
    # receipt lines in one columnar batch
    "MAX_BATCH_LINES": 50_000,
    # journal entries in one page of history
    "MAX_HISTORY_LIMIT": 200,
}


#: Endpoints whose body is a batch (msgpack): bounded by MAX_BATCH_BYTES, never read as JSON.
BATCH_ENDPOINTS = frozenset({"receipts.accrue_batch"})


def settings(overrides: Mapping[str, object] | None, environment: Mapping[str, str]) -> dict[str, object]:
    """The effective settings: defaults < environment (``FIDELIS_<NAME>``) < ``overrides``.

    Numeric settings from the environment must be whole numbers.
    """
    effective = dict(DEFAULTS)
    for name, default in DEFAULTS.items():
        text = environment.get(f"FIDELIS_{name}")
        if text is None:
            continue
        if isinstance(default, int):
            try:
                effective[name] = int(text)
            except ValueError:
                raise ValueError(f"FIDELIS_{name} must be a whole number, not {text!r}") from None
        else:
            effective[name] = text
    effective.update(overrides or {})
    if not effective["LEDGER"]:
        raise ValueError("no ledger: set FIDELIS_LEDGER or pass {'LEDGER': path} to create_app")
    return effective
