"""The HTTP API through Flask's test client: every endpoint, keys and roles, validation,
one error shape, size limits, idempotency, pagination."""
from __future__ import annotations

import datetime as dt
import logging

import pyarrow as pa
import pytest

import fidelis.core
from fidelis.core.jobs import month_end as lifecycle
from fidelis.core.ingest.msgpack_batch import encode
from fidelis.core.jobs.check import check_ledger
from fidelis.core.ledger.handle import Ledger
from fidelis.core.localtime import parse_month
from fidelis.core.program.model import parse_program
from fidelis.server import create_app
from fidelis.core.ledger.api_keys import create_api_key, revoke_api_key
from fidelis.core.ledger.journal import balance

# Verde Club: R1 (Saturday 7 June 2025, summer weekends ×2) earns 10.00 × 2 = 20 + 100 welcome
R1 = {"receipt_id": "R1", "customer_id": "C1", "store_id": "S1", "ts": "2025-06-07T10:00",
      "lines": [{"category": "grocery", "qty": 1, "amount": "10.00", "sku": "G-1"}]}


def receipt(receipt_id: str, ts: str, amount: str = "10.00", customer: str = "C1") -> dict:
    return {**R1, "receipt_id": receipt_id, "ts": ts, "customer_id": customer,
            "lines": [{"category": "grocery", "qty": 1, "amount": amount}]}


@pytest.fixture
def api(tmp_path, verde_club):
    """A test client on a fresh Verde Club ledger (with monthly expiry), and its keys."""
    class Api:
        def __init__(self, **config):
            program = parse_program(verde_club.text + "\n[expiry]\nafter_months = 1\n")
            self.path = tmp_path / "chain.db"
            with Ledger.create(self.path, program) as ledger:
                self.write_key = create_api_key(ledger, "write", "tills")
                self.read_key = create_api_key(ledger, "read", "app")
            self.app = create_app({"LEDGER": str(self.path), **config})
            self.client = self.app.test_client()

        def get(self, url, key="read", **options):
            return self.client.get(url, headers=self._headers(key, options), **options)

        def post(self, url, key="write", **options):
            return self.client.post(url, headers=self._headers(key, options), **options)

        def _headers(self, key, options) -> dict:
            headers = options.pop("headers", {})
            if key:
                headers.setdefault("X-API-Key", {"read": self.read_key, "write": self.write_key}.get(key, key))
            return headers

        def redeem(self, points, idempotency_key, customer="C1", key="write"):
            return self.post(f"/v1/customers/{customer}/redemptions", key=key, json={"points": points},
                             headers={"Idempotency-Key": idempotency_key})

        def ledger(self) -> Ledger:
            return Ledger(self.path)

    return Api


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.json
    assert response.mimetype == "application/json"
    body = response.json
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body["error"]


# --- keys and roles ----------------------------------------------------------------------------


def test_health_and_the_api_document_need_no_key(api):
    client = api()
    assert client.get("/v1/health", key=None).json == {"status": "ok", "program": "Verde Club"}
    document = client.get("/openapi.json", key=None).json
    assert set(document["paths"]) == {
        "/v1/health", "/v1/customers/{customer_id}/balance", "/v1/customers/{customer_id}/history",
        "/v1/customers/{customer_id}/redemptions", "/v1/receipts", "/v1/receipts/batch", "/v1/returns"}
    assert document["components"]["securitySchemes"]["ApiKey"]["in"] == "header"
    schemas = document["components"]["schemas"]
    assert any(name.startswith("ReceiptIn") for name in schemas) and any("ReturnIn" in name for name in schemas)


@pytest.mark.parametrize("key", [None, "fid_000000000000_wrong", "not-a-key"])
def test_a_missing_or_unknown_key_is_401(api, key):
    client = api()
    response = client.get("/v1/customers/C1/balance", key=key)
    assert_error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_read_key_cannot_write_and_a_write_key_can_read(api):
    client = api()
    assert_error(client.post("/v1/receipts", key="read", json=R1), 403, "forbidden")
    assert client.post("/v1/receipts", key="write", json=R1).status_code == 201
    assert client.get("/v1/customers/C1/balance", key="write").status_code == 200


def test_a_bearer_token_works_and_a_revoked_key_stops_at_once(api):
    client = api()
    bearer = {"Authorization": f"Bearer {client.read_key}"}
    assert client.client.get("/v1/health", headers=bearer).status_code == 200
    client.post("/v1/receipts", json=R1)
    assert client.client.get("/v1/customers/C1/balance", headers=bearer).status_code == 200
    with client.ledger() as ledger:
        revoke_api_key(ledger, client.read_key.split("_")[1])
    assert_error(client.client.get("/v1/customers/C1/balance", headers=bearer), 401, "unauthenticated")


def test_keys_are_stored_hashed_and_never_logged(api, caplog):
    client = api()
    secret = client.write_key.split("_", 2)[2]
    with client.ledger() as ledger:
        stored = ledger.db.execute("SELECT secret_sha256 FROM api_keys").fetchall()
    assert all(secret not in row[0] for row in stored)
    assert secret.encode() not in client.path.read_bytes()
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/receipts", json=R1)
        client.get("/v1/customers/C1/balance", key="write")
    assert secret not in caplog.text


# --- balance and history -----------------------------------------------------------------------


def test_balance_tier_progress_and_points_expiring_at_the_next_close(api):
    client = api()
    client.post("/v1/receipts", json=R1)
    with client.ledger() as ledger:  # June closed: June's points are gone at the close of July
        lifecycle.month_end(ledger, parse_month("2025-06"), today=dt.date(2030, 1, 1))
    # progress is towards this year's tier (nothing bought yet this year)
    assert client.get("/v1/customers/C1/balance").json == {
        "customer_id": "C1", "points": 120, "tier": "Base", "next_tier": "Silver", "to_next_tier": 50_000,
        "expiring_points": 120, "expiring_at_close_of": "2025-07"}


def test_an_unknown_customer_is_404(api):
    client = api()
    assert_error(client.get("/v1/customers/NOBODY/balance"), 404, "customer_not_found")
    assert_error(client.get("/v1/customers/NOBODY/history"), 404, "customer_not_found")


def test_history_is_newest_first_and_pages_by_cursor(api):
    client = api()
    for number, day in enumerate((9, 10, 11), start=1):
        client.post("/v1/receipts", json=receipt(f"R{number}", f"2025-06-{day:02d}T10:00"))
    first = client.get("/v1/customers/C1/history?limit=2").json
    assert [entry["reference"] for entry in first["entries"]] == ["R3", "R2"]
    assert first["entries"][0]["at"] == "2025-06-11T10:00:00+03:00" and first["next_cursor"]
    second = client.get(f"/v1/customers/C1/history?limit=2&cursor={first['next_cursor']}").json
    assert [entry["reference"] for entry in second["entries"]] == ["R1"] and second["next_cursor"] is None


@pytest.mark.parametrize("query, field", [("limit=0", "limit"), ("limit=201", "limit"), ("limit=x", "limit"),
                                          ("cursor=abc", "cursor"), ("page=2", "page")])
def test_history_query_is_validated(api, query, field):
    client = api()
    client.post("/v1/receipts", json=R1)
    error = assert_error(client.get(f"/v1/customers/C1/history?{query}"), 422, "invalid_input")
    assert [detail["field"] for detail in error["details"]] == [field]


# --- accrual -----------------------------------------------------------------------------------


def test_accrual_is_scored_and_idempotent_on_the_receipt_id(api):
    client = api()
    first = client.post("/v1/receipts", json=R1)
    assert first.status_code == 201
    assert first.json == {
        "receipt_id": "R1", "customer_id": "C1", "tier": "Base",
        "points": {"rate_points": 20, "basket_points": 0, "visit_points": 0, "welcome_points": 100, "cap_points": 0,
                   "points": 120},
        "unrecovered_points": 0, "balance": 120, "existing": False, "is_return": False}
    again = client.post("/v1/receipts", json=R1)
    assert again.status_code == 200 and again.json == {**first.json, "existing": True}
    changed = {**R1, "lines": [{"category": "grocery", "qty": 2, "amount": "10.00"}]}
    assert_error(client.post("/v1/receipts", json=changed), 409, "receipt_conflict")
    with client.ledger() as ledger:
        assert balance(ledger, "C1") == 120 and check_ledger(ledger) == []


@pytest.mark.parametrize("change, field", [
    ({"lines": [{"category": "grocery", "qty": 0, "amount": "1.00"}]}, "lines[0].qty"),
    ({"lines": [{"category": "grocery", "qty": 1, "amount": 10.5}]}, "lines[0].amount"),
    ({"lines": [{"category": "grocery", "qty": 1, "amount": "1.005"}]}, "lines[0].amount"),
    ({"lines": [{"category": "", "qty": 1, "amount": "1.00"}]}, "lines[0].category"),
    ({"lines": []}, "lines"),
    ({"ts": "yesterday at noon"}, "ts"),
    ({"store_id": ""}, "store_id"),
    ({"colour": "red"}, "colour"),
])
def test_accrual_input_is_validated_naming_the_field(api, change, field):
    client = api()
    error = assert_error(client.post("/v1/receipts", json={**R1, **change}), 422, "invalid_input")
    assert field in [detail["field"] for detail in error["details"]]
    with client.ledger() as ledger:
        assert ledger.db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0] == 0


def test_a_late_receipt_is_409_and_nothing_is_written(api):
    client = api()
    client.post("/v1/receipts", json=receipt("R2", "2025-06-10T10:00"))
    assert_error(client.post("/v1/receipts", json=receipt("R1", "2025-06-09T10:00")), 409, "late_receipt")


def test_malformed_and_oversized_bodies(api):
    client = api(MAX_JSON_BYTES=2000)
    assert_error(client.post("/v1/receipts", data="{not json", content_type="application/json"),
                 400, "malformed_json")
    big = {**R1, "lines": [{"category": "grocery", "qty": 1, "amount": "1.00"}] * 100}
    assert_error(client.post("/v1/receipts", json=big), 413, "request_entity_too_large")


@pytest.mark.parametrize("body, content_type, status, code, says", [
    ('{"points": 10, "points": 1000}', "application/json", 400, "malformed_json", "'points' appears more than once"),
    ("[" * 20_000 + "]" * 20_000, "application/json", 400, "malformed_json", "nested too deeply"),
    ("points=10", "application/x-www-form-urlencoded", 415, "unsupported_media_type", "send the body as JSON"),
], ids=["duplicate-key", "nested-20000-deep", "form-encoded"])
def test_bodies_a_hostile_client_sends_are_refused_not_500(api, body, content_type, status, code, says):
    client = api(MAX_JSON_BYTES=64 * 1024)
    client.post("/v1/receipts", json=R1)
    error = assert_error(client.post("/v1/customers/C1/redemptions", data=body, content_type=content_type,
                                     headers={"Idempotency-Key": "k1"}), status, code)
    assert says in error["message"]


def test_a_columnar_msgpack_batch_is_accrued_all_or_nothing(api):
    client = api(MAX_BATCH_LINES=3)
    table = pa.table({"receipt_id": ["B1", "B2", "B2"], "customer_id": ["C1", "C2", "C2"],
                      "store_id": ["S1"] * 3, "ts": ["2025-06-09T10:00"] * 3, "category": ["grocery"] * 3,
                      "qty": pa.array([1, 1, 2], pa.int64()), "amount": ["10.00", "20.00", "5.00"]})
    body = encode(table)
    sent = client.post("/v1/receipts/batch", data=body, content_type="application/msgpack")
    assert sent.status_code == 200, sent.json
    assert sent.json == {"receipts": 2, "new": 2, "existing": 0, "points": 10 + 100 + 25 + 100}
    assert client.post("/v1/receipts/batch", data=body, content_type="application/msgpack").json["existing"] == 2
    assert_error(client.post("/v1/receipts/batch", data=body, content_type="application/json"), 415,
                 "unsupported_media_type")
    four = pa.concat_tables([table, table.slice(0, 1)])
    assert_error(client.post("/v1/receipts/batch", data=encode(four), content_type="application/msgpack"),
                 413, "request_entity_too_large")
    bad = table.set_column(5, "qty", pa.array([1, 0, 2], pa.int64()))
    error = assert_error(client.post("/v1/receipts/batch", data=encode(bad.set_column(
        0, "receipt_id", pa.array(["B3", "B4", "B4"]))), content_type="application/msgpack"), 422, "invalid_input")
    assert error["details"][0] == {"field": "row 2.qty", "message": "qty must be at least 1"}


def test_a_batch_larger_than_its_limit_is_refused_before_it_is_read(api):
    client = api(MAX_BATCH_BYTES=100)
    assert_error(client.post("/v1/receipts/batch", data=b"x" * 101, content_type="application/msgpack"),
                 413, "request_entity_too_large")


# --- redemptions and returns -------------------------------------------------------------------


def test_redemption_is_idempotent_on_its_key(api):
    client = api()
    client.post("/v1/receipts", json=R1)
    first = client.redeem(50, "pos-1")
    assert first.status_code == 201 and (first.json["balance"], first.json["existing"]) == (70, False)
    again = client.redeem(50, "pos-1")
    assert again.status_code == 200 and again.json == {**first.json, "existing": True}
    assert_error(client.redeem(60, "pos-1"), 409, "idempotency_conflict")
    assert_error(client.redeem(500, "pos-2"), 409, "insufficient_points")
    assert_error(client.post("/v1/customers/C1/redemptions", json={"points": 5}), 400, "missing_idempotency_key")
    assert [d["field"] for d in assert_error(client.redeem(0, "pos-3"), 422, "invalid_input")["details"]] == ["points"]
    assert_error(client.redeem(5, "pos-4", key="read"), 403, "forbidden")
    with client.ledger() as ledger:
        assert balance(ledger, "C1") == 70


def test_a_return_takes_back_what_its_goods_earned(api):
    client = api()
    client.post("/v1/receipts", json=R1)
    back = {"return_id": "X1", "original_receipt_id": "R1", "store_id": "S2", "ts": "2025-06-08T12:00",
            "lines": [{"sku": "G-1", "qty": 1}]}
    taken = client.post("/v1/returns", json=back)
    assert taken.status_code == 201, taken.json
    assert (taken.json["points"]["points"], taken.json["balance"], taken.json["is_return"]) == (-20, 100, True)
    assert client.post("/v1/returns", json=back).json["existing"] is True
    more = assert_error(client.post("/v1/returns", json={**back, "return_id": "X2"}), 422, "invalid_input")
    assert "more than was bought" in more["details"][0]["message"]
    unknown = assert_error(client.post("/v1/returns", json={**back, "return_id": "X3", "original_receipt_id": "R9"}),
                           422, "invalid_input")
    assert unknown["details"][0]["field"] == "original_receipt_id"
    nameless = assert_error(client.post("/v1/returns", json={**back, "lines": [{"qty": 1}]}), 422, "invalid_input")
    assert nameless["details"][0]["field"] == "lines[0]"


# --- errors ------------------------------------------------------------------------------------


def test_unexpected_errors_are_a_bare_500_without_a_traceback(api, monkeypatch):
    client = api()
    client.post("/v1/receipts", json=R1)
    monkeypatch.setattr(fidelis.core, "standing", lambda *args, **kwargs: 1 / 0)
    error = assert_error(client.get("/v1/customers/C1/balance"), 500, "internal_error")
    assert "division" not in error["message"]


def test_unknown_routes_and_methods_use_the_error_shape(api):
    client = api()
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.client.delete("/v1/health"), 405, "method_not_allowed")


def test_settings_come_from_defaults_environment_and_arguments(api, monkeypatch):
    client = api()
    monkeypatch.setenv("FIDELIS_LEDGER", str(client.path))
    monkeypatch.setenv("FIDELIS_MAX_JSON_BYTES", "1234")
    app = create_app()
    assert (app.config["LEDGER"], app.config["MAX_JSON_BYTES"]) == (str(client.path), 1234)
    assert create_app({"MAX_JSON_BYTES": 99}).config["MAX_JSON_BYTES"] == 99
    monkeypatch.setenv("FIDELIS_MAX_JSON_BYTES", "lots")
    with pytest.raises(ValueError, match="FIDELIS_MAX_JSON_BYTES must be a whole number"):
        create_app()
    monkeypatch.delenv("FIDELIS_LEDGER")
    monkeypatch.delenv("FIDELIS_MAX_JSON_BYTES")
    with pytest.raises(ValueError, match="no ledger"):
        create_app()


def test_receipts_posted_one_by_one_equal_a_bulk_load(tmp_path, api):
    from fidelis.core.jobs.load import load_files
    from fidelis.core.program.model import load_program
    from fidelis.core.synthetic import generate_chain, write_chain

    from .test_accrual import ledger_rows, receipt_tables

    chain = write_chain(generate_chain(300, seed=9), tmp_path / "synthetic")
    program = load_program(chain["program"])
    with Ledger.create(tmp_path / "bulk.db", program) as bulk:
        load_files(bulk, [chain["receipts"]])
        expected = ledger_rows(bulk)
    with Ledger.create(tmp_path / "live.db", program) as live:
        key = create_api_key(live, "write")
    client = create_app({"LEDGER": str(tmp_path / "live.db")}).test_client()
    for table in receipt_tables(chain["receipts"]):
        row = table.to_pylist()
        body = {"receipt_id": row[0]["receipt_id"], "customer_id": row[0]["customer_id"] or None,
                "store_id": row[0]["store_id"], "ts": row[0]["ts"],
                "lines": [{"category": line["category"], "qty": line["qty"], "amount": line["amount"],
                           "sku": line["sku"]} for line in row]}
        response = client.post("/v1/receipts", json=body, headers={"X-API-Key": key})
        assert response.status_code == 201, response.json
    with Ledger(tmp_path / "live.db") as live:
        assert ledger_rows(live) == expected


# --- hardening ---------------------------------------------------------------------------------


@pytest.mark.parametrize("change, field", [
    ({"receipt_id": "R\x001"}, "receipt_id"),
    ({"customer_id": "C\n1"}, "customer_id"),
    ({"ts": "2199-12-01T10:00"}, "ts"),
])
def test_control_characters_and_far_future_dates_are_refused(api, change, field):
    client = api()
    error = assert_error(client.post("/v1/receipts", json={**R1, **change}), 422, "invalid_input")
    assert field in [detail["field"] for detail in error["details"]]


def test_numbers_are_not_read_from_text_and_a_huge_cursor_is_invalid(api):
    client = api()
    client.post("/v1/receipts", json=R1)
    assert_error(client.post("/v1/customers/C1/redemptions", json={"points": "100"},
                             headers={"Idempotency-Key": "k"}), 422, "invalid_input")
    assert_error(client.get("/v1/customers/C1/history?cursor=9999999999999999999"), 422, "invalid_input")


def test_the_key_is_checked_before_the_body_is_read(api):
    client = api()
    assert_error(client.post("/v1/receipts", key=None, data="{not json", content_type="application/json"),
                 401, "unauthenticated")


def test_a_body_without_a_length_is_refused(api):
    import io

    client = api()
    response = client.client.post("/v1/receipts", input_stream=io.BytesIO(b"{}"),
                                  headers={"X-API-Key": client.write_key, "Content-Type": "application/json",
                                           "Transfer-Encoding": "chunked"})
    assert_error(response, 411, "length_required")


def test_a_replayed_redemption_gives_the_first_result_and_conflicts_say_no_more_than_needed(api):
    client = api()
    client.post("/v1/receipts", json=R1)
    first = client.redeem(50, "pos-1").json
    client.post("/v1/receipts", json=receipt("R2", "2025-06-09T10:00"))
    assert client.redeem(50, "pos-1").json == {**first, "existing": True}  # the balance it left, not today's
    client.post("/v1/receipts", json={**R1, "receipt_id": "R9", "customer_id": "C2"})
    error = assert_error(client.redeem(50, "pos-1", customer="C2"), 409, "idempotency_conflict")
    assert "C1" not in error["message"]


def test_a_busy_ledger_is_503_without_its_path(api, monkeypatch):
    from fidelis.core.errors import LedgerBusy

    client = api()
    client.post("/v1/receipts", json=R1)

    def busy(*args, **kwargs):
        raise LedgerBusy(f"{client.path}: another process is writing")

    monkeypatch.setattr(fidelis.core, "redeem", busy)
    response = client.redeem(50, "pos-1")
    error = assert_error(response, 503, "ledger_busy")
    assert str(client.path) not in error["message"] and response.headers["Retry-After"] == "1"


def test_a_receipt_beyond_the_engines_bounds_is_422(api):
    client = api()
    big = {**R1, "lines": [{"category": "grocery", "qty": 1, "amount": "99999999999999.00"}]}
    error = assert_error(client.post("/v1/receipts", json=big), 422, "invalid_input")
    assert error["details"][0]["field"] == "lines[0].amount"
    assert client.post("/v1/receipts", json=R1).status_code == 201
