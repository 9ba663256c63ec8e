"""Property-based testing of the HTTP API against its own OpenAPI description
(schemathesis, on hypothesis): requests generated from /api/v1/openapi.json, sent over
real TCP to a real server on SQLite and PostgreSQL, never answer 5xx, nor a status,
content type or body the description does not allow.

Kept small in the default run (a few examples per operation and role);
``LIUHEN_API_FUZZ_EXAMPLES=200`` runs it in earnest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from catalog.devices import add_device
from tests.api_helpers import add_proxy, served, session_secret
from tests.case_helpers import cst, make_recording

EXAMPLES = int(os.environ.get("LIUHEN_API_FUZZ_EXAMPLES", "6"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def base(app: Any) -> Iterator[str]:
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="DEV-A", unit="徐汇分局", actor="test")
    for hour in (7, 8):
        rec = make_recording(app, serial="DEV-A", start=cst(2026, 12, 1, hour))
        add_proxy(app, rec, size=5000)
    with served(app.settings) as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("role", ["archivist", "auditor"])
def test_no_server_error_and_no_answer_the_description_forbids(
    app: Any, base: str, role: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {session_secret(app, role)}"}
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the description itself is valid
        operations.append(result.ok())
    assert len(operations) >= 20
    for operation in operations:
        if operation.path == "/api/v1/session" and operation.method.upper() == "DELETE":
            continue  # logging out a token-less session: nothing to test, and it ends ours

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)

        check()
