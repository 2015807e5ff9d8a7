"""Health and the API document: no key needed (load balancers, client generators)."""
from __future__ import annotations

from flask import Blueprint, jsonify
from spectree import Response

from .handles import ledger
from .models import HealthOut
from .spec import spec

blueprint = Blueprint("meta", __name__)


@blueprint.get("/v1/health")
@spec.validate(resp=Response(HTTP_200=HealthOut), tags=["meta"], security={})
def health():
    """200 when the ledger answers."""
    handle = ledger()
    handle.ping()
    return HealthOut(status="ok", program=handle.current_program().program.info.name)


@blueprint.get("/openapi.json")
def openapi():
    """The OpenAPI document of this API, built from the models that validate requests."""
    return jsonify(spec.spec)
