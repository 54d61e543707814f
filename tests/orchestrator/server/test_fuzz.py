"""Property-based fuzzing of the API: whatever a caller sends, the answer is never a 5xx and
an error is always the machine-readable form."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.orchestrator.server.conftest import Api

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

segments = st.text(min_size=1, max_size=40).filter(lambda s: s not in (".", ".."))
values = st.one_of(st.text(max_size=40), st.integers().map(str), st.floats().map(str))
queries = st.dictionaries(
    st.sampled_from(["state", "arch", "model", "limit", "timeout", "device_class", "backend", "precision", "include_offline", "x"]),
    values,
    max_size=4,
)
GETS = [
    "/jobs",
    "/jobs/{id}",
    "/jobs/{id}/wait",
    "/jobs/{id}/artifact",
    "/jobs/{id}/results",
    "/artifacts",
    "/artifacts/{id}",
    "/artifacts/{id}/results",
    "/artifacts/{id}/download",
    "/results/{id}",
    "/workers",
]


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"kind", "message", "exit_code"}


@pytest.fixture(scope="module")
def client(api: Api):
    with api.client("admin") as c:
        yield c


@FUZZ
@given(path=st.sampled_from(GETS), ref=segments, query=queries)
def test_get_endpoints_never_answer_5xx(client: httpx.Client, path: str, ref: str, query: dict[str, str]) -> None:
    if "timeout" in query:
        query["timeout"] = "0"  # a long-poll would only make the run slow
    _check(client.get(path.replace("{id}", quote(ref, safe="")), params=query))


@FUZZ
@given(ref=segments, action=st.sampled_from(["cancel", "retry"]))
def test_control_endpoints_never_answer_5xx(client: httpx.Client, ref: str, action: str) -> None:
    _check(client.post(f"/jobs/{quote(ref, safe='')}/{action}"))


@FUZZ
@given(
    body=st.binary(max_size=2048),
    fields=st.dictionaries(
        st.sampled_from(["arch", "device_class", "spec", "backend", "precision", "name", "filename"]),
        st.text(max_size=60),
        max_size=5,
    ),
    form=st.sampled_from(
        ["multipart", "application/octet-stream", "multipart/form-data; boundary=xx", "multipart/form-data", "text/plain"]
    ),
)
def test_submissions_of_garbage_never_answer_5xx(
    client: httpx.Client, body: bytes, fields: dict[str, str], form: str
) -> None:
    if form == "multipart":
        response = client.post("/jobs", files={"model": (fields.get("filename") or "m.pt2", body)}, data=fields)
    else:
        # Raw bodies, and bodies that claim to be multipart but are not.
        response = client.post("/jobs", content=body, params=fields, headers={"Content-Type": form})
    _check(response)
