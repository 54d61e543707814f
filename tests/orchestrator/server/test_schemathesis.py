"""Property-based fuzzing of every operation in the published OpenAPI schema (schemathesis's
case strategies, driven by hypothesis): whatever the schema lets a client send, the server
never answers 5xx. (schemathesis's own pytest plugin does not run on pytest 9 yet.)"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.orchestrator.server.conftest import Api


@pytest.fixture(scope="module")
def operations(api: Api) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 15
    return found


def test_every_operation_never_answers_a_server_error(api: Api, operations: list[schemathesis.APIOperation]) -> None:
    headers = {"Authorization": f"Bearer {api.secrets['admin']}"}
    seen: set[str] = set()

    @given(case=st.sampled_from(operations).flatmap(lambda operation: operation.as_strategy()))
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        if case.path.endswith("/wait"):
            case.query = {**(case.query or {}), "timeout": 0}  # a long-poll would only be slow
        seen.add(f"{case.method} {case.path}")
        case.call_and_validate(base_url=api.url, headers=headers, checks=[not_a_server_error])

    check()
    assert len(seen) >= 12, seen
