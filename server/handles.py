"""The ledger handle a request works with.

A handle is a SQLite connection plus the parsed and compiled program (parsed once per
program version). Opening one per request would cost more than most requests, so each
worker thread keeps one per ledger and every request on that thread uses it; SQLite
connections are never shared between threads.
"""
from __future__ import annotations

import threading

from fidelis.core import Ledger
from flask import current_app, g

_per_thread = threading.local()


def ledger() -> Ledger:
    """This request's ledger handle."""
    handle = g.get("ledger")
    if handle is None:
        path = current_app.config["LEDGER"]
        handles = getattr(_per_thread, "handles", None)
        if handles is None:
            handles = _per_thread.handles = {}
        handle = handles.get(path)
        if handle is None:
            handle = handles[path] = Ledger(path)
        g.ledger = handle
    return handle
