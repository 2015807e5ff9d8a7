"""The Fidelis HTTP API: balance lookup, history, real-time accrual, redemption and returns.

A thin layer over :mod:`fidelis.core`: every rule lives there (the kernel scores, the ledger
keeps the journal); this package authenticates, validates, and turns results and errors
into JSON. ``create_app`` builds the Flask application; ``fidelis serve`` runs it under
gunicorn.
"""
from .app import create_app

__all__ = ["create_app"]
