"""A bounded HTTP load generator for the Fidelis API, and a served ledger to aim it at.

Stdlib only (``http.client`` keep-alive connections): several processes, each with several
threads, each thread with its own connection, send requests until a deadline and record
every latency. It stops by itself. On this project's 2-core machine the generator shares the
cores with the server it measures, so the figures are a floor for a separate client machine.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

#: (method, path, body, headers) for request number ``n`` of thread ``(process, thread)``.
RequestMaker = Callable[[int, int, int], tuple[str, str, bytes | None, dict]]


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_s: np.ndarray
    statuses: dict[int, int]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000) if len(self.latencies_s) else float("nan")

    def summary(self) -> str:
        return (f"{self.requests:,} requests in {self.seconds:.1f} s: {self.per_second:,.0f} req/s, "
                f"p50 {self.percentile_ms(50):.1f} ms, p99 {self.percentile_ms(99):.1f} ms, "
                f"{self.errors} errors, statuses {self.statuses}")


def _thread_loop(port: int, make: RequestMaker, process: int, thread: int, deadline: float,
                 latencies: list, statuses: dict, lock: threading.Lock) -> None:
    """One keep-alive connection: write a request, read one response (status line, headers,
    Content-Length bytes), repeat. Raw sockets: http.client costs the shared CPU several
    times more per request."""
    connection = _Connection(port)
    mine, seen = [], {}
    number = 0
    while time.perf_counter() < deadline:
        method, path, body, headers = make(process, thread, number)
        number += 1
        started = time.perf_counter()
        try:
            status = connection.exchange(method, path, body, headers)
        except OSError:
            status = 0
            connection.close()
            connection = _Connection(port)
        mine.append(time.perf_counter() - started)
        seen[status] = seen.get(status, 0) + 1
    connection.close()
    with lock:
        latencies.extend(mine)
        for status, count in seen.items():
            statuses[status] = statuses.get(status, 0) + count


class _Connection:
    def __init__(self, port: int):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, method: str, path: str, body: bytes | None, headers: dict) -> int:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body) if body else 0}")
        self.socket.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            self._read()
        self.buffer = self.buffer[length:]
        return status

    def _read(self) -> None:
        chunk = self.socket.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.socket.close()


def _process_main(port, make, process, threads, seconds, queue) -> None:
    latencies, statuses, lock = [], {}, threading.Lock()
    deadline = time.perf_counter() + seconds
    workers = [threading.Thread(target=_thread_loop, args=(port, make, process, t, deadline, latencies, statuses, lock))
               for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put((latencies, statuses))


def run_load(port: int, make: RequestMaker, *, seconds: float = 10.0, processes: int = 2,
             threads: int = 8, ok_statuses: tuple[int, ...] = (200, 201)) -> LoadResult:
    """Send requests from ``processes × threads`` connections for ``seconds``; every latency."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    started = time.perf_counter()
    workers = [context.Process(target=_process_main, args=(port, make, p, threads, seconds, queue))
               for p in range(processes)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    latencies = np.array([value for part, _ in results for value in part])
    statuses: dict[int, int] = {}
    for _, part in results:
        for status, count in part.items():
            statuses[status] = statuses.get(status, 0) + count
    errors = sum(count for status, count in statuses.items() if status not in ok_statuses)
    return LoadResult(len(latencies), errors, min(elapsed, seconds), latencies, statuses)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(ledger: Path, *, workers: int = 2, threads: int = 16, options: Sequence[str] = (),
           log: Path | None = None) -> Iterator[int]:
    """``fidelis serve`` on a free loopback port for the duration; yields the port.

    ``options``: more ``fidelis serve`` options; ``log``: where its output goes (default: nowhere).
    """
    port = free_port()
    output = log.open("wb") if log is not None else subprocess.DEVNULL
    server = subprocess.Popen(
        [sys.executable, "-m", "fidelis.core.cli", "serve", str(ledger), "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--threads", str(threads), *options],
        stdout=output, stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/v1/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    said = server.stderr.read().decode() if server.stderr else log.read_text()
                    raise RuntimeError(f"the server did not start: {said[-2000:]}")
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        if log is not None:
            output.close()


def json_request(method: str, path: str, key: str, body: dict | None = None,
                 headers: dict | None = None) -> tuple[str, str, bytes | None, dict]:
    all_headers = {"X-API-Key": key, **(headers or {})}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    return method, path, payload, all_headers
