"""Running the API: under gunicorn (threaded workers) in production, Flask's server for development."""
from __future__ import annotations

from flask import Flask
from gunicorn.app.base import BaseApplication

from .app import create_app
from .worker import REQUEST_READ_SECONDS, Worker, install_json_errors

#: The access log: client, time, method, path without its query string, protocol, status,
#: size, duration. Never the query string (a key pasted into a URL), the Basic-auth user
#: (``curl -u KEY:``), the referrer or any other header.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'


class _Gunicorn(BaseApplication):
    """gunicorn with an application object instead of an import string (so ``fidelis serve``
    needs no module path and passes its settings directly)."""

    def __init__(self, app: Flask, options: dict):
        self.application, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return self.application


def serve(ledger: str, *, bind: str = "127.0.0.1:8000", workers: int = 2, threads: int = 16,
          access_log: bool = False, read_seconds: float = REQUEST_READ_SECONDS, dev: bool = False) -> None:
    """Serve the API for ``ledger`` until interrupted.

    ``gthread`` workers: each a process with ``threads`` threads, so a request waiting on the
    ledger's write lock does not hold up lookups, and concurrent accruals of a process are
    committed together (more threads, larger groups: 16 measured best on 2 cores), each
    request read within a deadline (:mod:`.worker`). The access log (off by default) is
    :data:`ACCESS_LOG_FORMAT`: never a query string or a header, so never an API key.
    """
    app = create_app({"LEDGER": ledger})
    if dev:
        host, _, port = bind.rpartition(":")
        app.run(host=host or "127.0.0.1", port=int(port), threaded=True)
        return
    options = {
        "bind": bind, "workers": workers, "threads": threads, "worker_class": Worker,
        "accesslog": "-" if access_log else None, "access_log_format": ACCESS_LOG_FORMAT, "errorlog": "-",
        "keepalive": 5,
        "limit_request_line": 4094, "limit_request_fields": 50, "limit_request_field_size": 8190,
        "timeout": 30, "graceful_timeout": 10, "proc_name": "fidelis",
        # no gunicornc control socket: one per user by default, two servers on a host would share it
        "control_socket_disable": True,
    }
    install_json_errors()
    Worker.read_seconds = read_seconds
    _Gunicorn(app, options).run()
