"""The API under a real gunicorn on loopback: concurrent redemptions never overdraw."""
from __future__ import annotations

import csv
import http.client
import json
import threading

import pytest

from benchmarks.loadgen import served
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.handle import Ledger
from fidelis.core.ledger.api_keys import create_api_key
from fidelis.core.ledger.journal import balance


@pytest.mark.slow
def test_fifty_parallel_redemptions_through_gunicorn_never_overdraw(tmp_path, verde_club):
    receipts = tmp_path / "receipts.csv"
    with receipts.open("w", newline="") as handle:
        csv.writer(handle).writerows([
            ["receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount"],
            ["R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "10.00"],   # 20 + 100 welcome
            ["R2", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "20.00"],   # 20
        ])
    with Ledger.create(tmp_path / "chain.db", verde_club) as ledger:
        load_files(ledger, [receipts])
        key = create_api_key(ledger, "write")
    start = threading.Barrier(50)
    outcomes: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def redeem(port: int, number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start.wait()
        connection.request("POST", "/v1/customers/C1/redemptions", body=json.dumps({"points": 30}),
                           headers={"X-API-Key": key, "Idempotency-Key": f"till-{number}",
                                    "Content-Type": "application/json"})
        response = connection.getresponse()
        with lock:
            outcomes.append((response.status, json.loads(response.read())))

    with served(tmp_path / "chain.db", workers=2, threads=8) as port:
        threads = [threading.Thread(target=redeem, args=(port, number)) for number in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    statuses = sorted(status for status, _ in outcomes)
    # 140 points: four redemptions of 30 fit, every other one is refused, none fails
    assert statuses == [201] * 4 + [409] * 46
    assert {body["error"]["code"] for status, body in outcomes if status == 409} == {"insufficient_points"}
    with Ledger(tmp_path / "chain.db") as ledger:
        assert balance(ledger, "C1") == 140 - 4 * 30
        assert check_ledger(ledger) == []


@pytest.mark.slow
def test_a_tills_identical_retries_through_gunicorn_each_get_an_answer(tmp_path, verde_club):
    # 4 receipts, each sent 6 times at once: one 201 per receipt, 200 (existing) for every copy,
    # and the server still answers afterwards (copies once hung every later accrual)
    with Ledger.create(tmp_path / "chain.db", verde_club) as ledger:
        key = create_api_key(ledger, "write")
    outcomes: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def send(port: int, body: str, start: threading.Barrier) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        connection.request("POST", "/v1/receipts", body=body,
                           headers={"X-API-Key": key, "Content-Type": "application/json"})
        response = connection.getresponse()
        with lock:
            outcomes.append((response.status, json.loads(response.read())))

    with served(tmp_path / "chain.db", workers=1, threads=24) as port:
        for attempt in range(3):  # the race needs a few rounds to show
            bodies = [json.dumps({"receipt_id": f"R{attempt}-{n}", "customer_id": f"C{n}", "store_id": "S1",
                                  "ts": f"2025-06-0{attempt + 1}T10:00",
                                  "lines": [{"category": "grocery", "qty": 1, "amount": "10.00"}]}) for n in range(4)]
            start = threading.Barrier(24)
            senders = [threading.Thread(target=send, args=(port, bodies[n % 4], start)) for n in range(24)]
            for thread in senders:
                thread.start()
            for thread in senders:
                thread.join()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/v1/customers/C0/balance", headers={"X-API-Key": key})
        assert connection.getresponse().status == 200
    assert sorted(status for status, _ in outcomes) == [200] * 60 + [201] * 12, outcomes
    with Ledger(tmp_path / "chain.db") as ledger:
        assert len({balance(ledger, f"C{n}") for n in range(4)}) == 1
        assert check_ledger(ledger) == []


def _slow_client(port: int, key: str, sent: threading.Event, answers: list) -> None:
    """Sends a request's headers and then its body one byte a second, as a hostile or broken client."""
    import socket
    import time

    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"POST /v1/receipts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"X-API-Key: " + key.encode() + b"\r\nContent-Length: 1000\r\n\r\n{")
        sent.set()
        try:
            for _ in range(20):
                time.sleep(1)
                connection.sendall(b" ")
        except OSError:  # the server closed it
            pass
        answers.append(connection.recv(4096))


@pytest.mark.slow
def test_slow_clients_get_408_and_never_hold_the_server(tmp_path, verde_club):
    """Three clients trickling a byte a second into a 1-worker, 2-thread server: health still
    answers at once, and each trickler is answered 408 (JSON) once its read deadline passes."""
    import time

    with Ledger.create(tmp_path / "chain.db", verde_club) as ledger:
        key = create_api_key(ledger, "write")  # (without a key it is refused before its body is read)
    answers: list[bytes] = []
    with served(tmp_path / "chain.db", workers=1, threads=2, options=["--read-timeout", "3"]) as port:
        sent = [threading.Event() for _ in range(3)]
        clients = [threading.Thread(target=_slow_client, args=(port, key, event, answers)) for event in sent]
        for client in clients:
            client.start()
        for event in sent:
            event.wait(10)
        time.sleep(1)
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/v1/health")
        assert connection.getresponse().status == 200
        assert time.monotonic() - started < 5  # the deadline frees the threads within 3 s
        for client in clients:
            client.join(30)
    assert len(answers) == 3
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and json.loads(body)["error"]["code"] == "request_timeout"


@pytest.mark.slow
def test_the_access_log_never_holds_a_key_and_gunicorns_errors_are_json(tmp_path, verde_club):
    import base64
    import socket

    with Ledger.create(tmp_path / "chain.db", verde_club) as ledger:
        key = create_api_key(ledger, "read")
    log = tmp_path / "server.log"
    with served(tmp_path / "chain.db", workers=1, threads=2, options=["--access-log"], log=log) as port:
        basic = base64.b64encode(f"{key}:".encode()).decode()
        for path, headers in ((f"/v1/customers/C1/balance?api_key={key}", {}),
                              ("/v1/customers/C1/balance", {"Authorization": f"Basic {basic}"}),
                              ("/v1/customers/C1/balance", {"X-API-Key": key, "Referer": f"http://x/?k={key}"})):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", path, headers=headers)
            connection.getresponse().read()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # a request line too long
            raw.sendall(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            head, _, body = raw.recv(65536).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 414") and b"application/json" in head
        assert json.loads(body)["error"]["code"] == "request_line_too_long"
    written = log.read_text()
    assert written.count("GET /v1/customers/C1/balance HTTP/1.1") == 3
    secret = key.rsplit("_", 1)[1]
    assert secret not in written and key not in written
