"""The API description: spectree validates request bodies and queries with the models in
:mod:`.models` and builds the OpenAPI document from the same decorations."""
from __future__ import annotations

from spectree import SecurityScheme, SpecTree
from spectree.models import InType, SecureType, SecuritySchemeData

from .errors import ApiError


def _refuse_invalid(request, response, error, instance, *rest) -> None:
    """Invalid input is answered in the API's error shape, naming each field."""
    if error is None:
        return
    details = []
    for problem in error.errors()[:50]:
        field = ""
        for part in problem.get("loc", ()):
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        details.append({"field": field or "body", "message": problem.get("msg", "invalid")})
    raise ApiError(422, "invalid_input", "the request has values that cannot be taken", details)


spec = SpecTree(
    "flask",
    title="Fidelis API",
    version="1",
    path="apidoc",
    mode="strict",
    security_schemes=[SecurityScheme(name="ApiKey", data=SecuritySchemeData(
        type=SecureType.API_KEY, name="X-API-Key", field_in=InType.HEADER,
        description="A key from `fidelis api-key create`; also accepted as `Authorization: Bearer <key>`."))],
    security={"ApiKey": []},
    before=_refuse_invalid,
    validation_error_status=422,
)
