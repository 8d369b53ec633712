"""schemathesis against the live OpenAPI schema: no 5xx on any input, every 4xx has a reason."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.api.conftest import WRITE, ApiServer


def _operations(api: ApiServer) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_and_every_4xx_has_a_reason(api: ApiServer, mode: GenerationMode) -> None:
    operations = _operations(api)
    assert len(operations) >= 10
    for operation in operations:

        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            response = case.call(base_url=api.url, headers={"Authorization": f"Bearer {WRITE}"})
            assert response.status_code < 500, (case.as_curl_command(), response.text)
            case.validate_response(response, checks=[not_a_server_error])
            if 400 <= response.status_code < 500:
                detail = response.json().get("detail")
                assert isinstance(detail, str) and detail, (case.as_curl_command(), response.text)

        try:
            check()
        except Unsatisfiable:
            # No invalid input exists for this operation (e.g. /healthz has no parameters).
            assert mode is GenerationMode.NEGATIVE, operation.label
