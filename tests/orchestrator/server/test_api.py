"""Every endpoint of /api/v1 through a real HTTP client against a running server."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest

from orchestrator import models as m
from tests.orchestrator.server.conftest import Api, seed_artifact, upload


def _error(response: httpx.Response, status: int, kind: str, exit_code: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["kind"] == kind and error["exit_code"] == exit_code, error
    return str(error["message"])


def test_health_and_openapi_schema_are_published(api: Api) -> None:
    assert httpx.get(api.url + "/healthz").json() == {"ok": True}
    schema = httpx.get(api.url + "/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/wait",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}/retry",
        "/api/v1/artifacts",
        "/api/v1/artifacts/{artifact_id}/download",
        "/api/v1/results/{ref}",
        "/api/v1/workers",
    ):
        assert path in paths, path
    assert "multipart/form-data" in paths["/api/v1/jobs"]["post"]["requestBody"]["content"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_submit_multipart_with_a_yaml_spec_records_the_submitter(api: Api, tiny_model) -> None:
    with api.client("alice") as client:
        response = upload(client, tiny_model, arch=["x86_64", "aarch64"], spec="precision: fp32\nvalidation:\n  samples: 4\n")
        assert response.status_code == 201, response.text
        jobs = response.json()["jobs"]
        assert [job["arch"] for job in jobs] == ["x86_64", "aarch64"]
        assert {job["state"] for job in jobs} == {"queued"}
        assert {job["submitted_by"] for job in jobs} == {"alice"}
        assert jobs[0]["model_name"] == "tiny"
        assert response.json()["warnings"]  # no worker serves the queues
        shown = client.get(f"/jobs/{jobs[0]['id'][:10]}").json()
        assert shown["id"] == jobs[0]["id"] and shown["submitted_by"] == "alice"
        listed = client.get("/jobs", params={"state": "queued", "arch": "aarch64"}).json()["jobs"]
        assert jobs[1]["id"] in [job["id"] for job in listed]
        assert all(job["arch"] == "aarch64" for job in listed)


def test_submit_raw_body_with_fields_in_the_query(api: Api, tiny_model) -> None:
    with api.client("bob") as client:
        response = client.post(
            "/jobs",
            content=tiny_model.read_bytes(),
            params={"arch": "x86_64", "spec": json.dumps({"validation": {"samples": 2}}), "filename": "tiny.pt2"},
            headers={"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 201, response.text
        (job,) = response.json()["jobs"]
        assert job["submitted_by"] == "bob" and job["model_name"] == "tiny"


def test_bad_submissions_are_usage_errors_and_store_nothing(api: Api, tiny_model) -> None:
    with api.client("alice") as client:
        with api.farm.session() as session:
            models_before = session.query(m.Model).count()
        not_a_program = client.post(
            "/jobs", files={"model": ("x.pt2", b"not a zip")}, data={"arch": "x86_64"}
        )
        assert "model refused" in _error(not_a_program, 400, "invalid_request", 2)
        assert "arch" in _error(upload(client, tiny_model, arch=[]), 400, "invalid_request", 2)
        bad_arch = upload(client, tiny_model, arch="sparc")
        _error(bad_arch, 400, "invalid_request", 2)
        bad_spec = upload(client, tiny_model, spec="precision: fp7")
        assert "precision" in _error(bad_spec, 400, "invalid_request", 2)
        not_yaml = upload(client, tiny_model, spec="a: [unclosed")
        _error(not_yaml, 400, "invalid_request", 2)
        no_model = client.post("/jobs", files={"other": ("x", b"1")}, data={"arch": "x86_64"})
        assert "model" in _error(no_model, 400, "invalid_request", 2)
        with api.farm.session() as session:
            assert session.query(m.Model).count() == models_before


def test_unknown_ids_and_bad_filters(api: Api) -> None:
    with api.client("reader") as client:
        _error(client.get("/jobs/ffffffffffff"), 404, "not_found", 2)
        _error(client.get("/artifacts/ffffffffffff"), 404, "not_found", 2)
        _error(client.get("/results/ffffffffffff"), 404, "not_found", 2)
        _error(client.get("/jobs", params={"state": "sleeping"}), 400, "invalid_request", 2)
        _error(client.get("/jobs", params={"limit": "0"}), 400, "invalid_request", 2)
        _error(client.get("/nowhere"), 404, "not_found", 2)


def test_wait_long_polls_until_its_timeout_then_answers_the_job(api: Api, tiny_model) -> None:
    with api.client("alice") as client:
        (job,) = upload(client, tiny_model).json()["jobs"]
        started = time.monotonic()
        waited = client.get(f"/jobs/{job['id']}/wait", params={"timeout": 0.5})
        assert waited.status_code == 200 and waited.json()["state"] == "queued"
        assert time.monotonic() - started >= 0.5
        client.post(f"/jobs/{job['id']}/cancel")
        started = time.monotonic()
        assert client.get(f"/jobs/{job['id']}/wait", params={"timeout": 30}).json()["state"] == "cancelled"
        assert time.monotonic() - started < 5


def test_cancel_and_retry_own_jobs_with_submit_any_with_admin(api: Api, tiny_model) -> None:
    with api.client("alice") as alice, api.client("bob") as bob, api.client("admin") as admin, api.client("reader") as reader:
        (job,) = upload(alice, tiny_model).json()["jobs"]
        path = f"/jobs/{job['id']}"
        _error(bob.post(path + "/cancel"), 403, "forbidden", 2)
        _error(reader.post(path + "/cancel"), 403, "forbidden", 2)
        assert alice.post(path + "/cancel").json()["state"] == "cancelled"
        _error(alice.post(path + "/cancel"), 409, "invalid_state", 2)
        _error(bob.post(path + "/retry"), 403, "forbidden", 2)
        retried = alice.post(path + "/retry").json()
        assert retried["state"] == "queued" and retried["id"] == job["id"]
        _error(alice.post(path + "/retry"), 409, "invalid_state", 2)
        assert admin.post(path + "/cancel").json()["state"] == "cancelled"
        assert admin.post(path + "/retry").json()["state"] == "queued"
        assert alice.get(path).json()["submitted_by"] == "alice"


def test_artifacts_list_show_download_and_results(api: Api, tiny_model) -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB: several chunks
    with api.client("alice") as alice:
        (job,) = upload(alice, tiny_model, spec="validation:\n  samples: 3\n").json()["jobs"]
    artifact_id = seed_artifact(api.farm, job["id"], payload)
    with api.client("reader") as client:
        listed = client.get("/artifacts", params={"arch": "x86_64", "limit": 100}).json()["artifacts"]
        assert artifact_id in [a["id"] for a in listed]
        shown = client.get(f"/artifacts/{artifact_id[:12]}").json()
        assert shown["sha256"] == hashlib.sha256(payload).hexdigest() and shown["size_bytes"] == len(payload)
        assert client.get(f"/jobs/{job['id']}/artifact").json()["id"] == artifact_id
        with client.stream("GET", f"/artifacts/{artifact_id}/download") as response:
            assert response.status_code == 200
            body = b"".join(response.iter_bytes())
            assert response.headers["X-Orchestrate-SHA256"] == hashlib.sha256(body).hexdigest()
            assert "attachment" in response.headers["Content-Disposition"]
        assert body == payload
        for path in (f"/artifacts/{artifact_id}/results", f"/jobs/{job['id']}/results", f"/results/{job['id']}", f"/results/{artifact_id}"):
            (result,) = client.get(path).json()["results"]
            assert result["metric"] == "max_abs_error" and result["passed"] is True, path
        (queued,) = upload(api.client("alice"), tiny_model, arch="aarch64", spec="validation:\n  samples: 5\n").json()["jobs"]
        _error(client.get(f"/jobs/{queued['id']}/artifact"), 404, "not_found", 2)
        assert client.get(f"/jobs/{queued['id']}/results").json() == {"results": []}


def test_workers_are_listed(api: Api) -> None:
    with api.farm.session() as session:
        session.add(m.Worker(name="w1@host", hostname="host", arch="aarch64", queues=["compile.aarch64"], capabilities={}))
    with api.client("reader") as client:
        workers = client.get("/workers").json()["workers"]
        assert [w["name"] for w in workers] == ["w1@host"] and workers[0]["live"] is True
        assert client.get("/queues").json() == {
            "queues": [{"queue": "compile.aarch64", "live_workers": ["w1@host"], "other_workers": []}]
        }
        assert client.get("/whoami").json() == {"user": "rita", "role": "read", "token_id": api.token_ids["reader"]}


def test_unreachable_broker_is_503_unreachable_with_the_cli_exit_code(tmp_path, tiny_model, monkeypatch) -> None:
    from orchestrator import celery_app, tokens

    # the publish's whole retry window is test_services' to prove; half a second is enough here
    monkeypatch.setattr(celery_app, "PUBLISH_RETRY_POLICY", celery_app.QUICK_PUBLISH_RETRY_POLICY)
    from orchestrator.server import create_app
    from orchestrator.server.testing import ServerThread
    from orchestrator.services import Farm
    from orchestrator.testing import embedded_settings

    farm = Farm(embedded_settings(tmp_path / "home", broker_url="redis://127.0.0.1:1/0"))
    secret = tokens.create_token(farm, "alice", "submit").secret
    with ServerThread(create_app(farm)) as server, httpx.Client(
        base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {secret}"}, timeout=60
    ) as client:
        message = _error(upload(client, tiny_model), 503, "unreachable", 3)
        assert "cannot reach the broker" in message
        assert client.get("/jobs").json() == {"jobs": []}


def test_unreachable_database_is_503_without_the_password(tmp_path) -> None:
    from orchestrator.server import create_app
    from orchestrator.server.testing import ServerThread
    from orchestrator.services import Farm
    from orchestrator.testing import embedded_settings

    farm = Farm(embedded_settings(tmp_path / "home", database_url="postgresql://farm:s3cret@127.0.0.1:1/farm"))
    with ServerThread(create_app(farm)) as server:
        response = httpx.get(server.url + "/api/v1/jobs", headers={"Authorization": "Bearer orc_x"})
    _error(response, 503, "unreachable", 3)
    assert "s3cret" not in response.text


def test_wait_since_answers_when_the_job_is_no_longer_as_the_caller_saw_it(api: Api, tiny_model) -> None:
    with api.client("alice") as client:
        (job,) = upload(client, tiny_model, spec="validation:\n  samples: 7\n").json()["jobs"]
        started = time.monotonic()
        seen_running = client.get(f"/jobs/{job['id']}/wait", params={"timeout": 10, "since": "running/build"})
        assert seen_running.json()["state"] == "queued" and time.monotonic() - started < 5
        held = client.get(f"/jobs/{job['id']}/wait", params={"timeout": 0.4, "since": "queued"})
        assert held.json()["state"] == "queued" and time.monotonic() - started >= 0.4


def test_a_real_build_through_the_api_downloads_a_verified_engine(tmp_path, tiny_model) -> None:
    """An eager farm builds during the submission: the job succeeds, its engine downloads
    with the recorded sha256, and it carries validation results."""
    from orchestrator import tokens
    from orchestrator.server import create_app
    from orchestrator.server.testing import ServerThread
    from orchestrator.services import Farm
    from orchestrator.testing import embedded_settings

    farm = Farm(embedded_settings(tmp_path / "home"), eager=True)
    secret = tokens.create_token(farm, "alice", "submit").secret
    with ServerThread(create_app(farm)) as server, httpx.Client(
        base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {secret}"}, timeout=300
    ) as client:
        response = upload(client, tiny_model, spec="validation:\n  samples: 2\n")
        assert response.status_code == 201, response.text
        (job,) = response.json()["jobs"]
        done = client.get(f"/jobs/{job['id']}/wait", params={"timeout": 60}).json()
        assert done["state"] == "succeeded", done
        artifact = client.get(f"/jobs/{job['id']}/artifact").json()
        download = client.get(f"/artifacts/{artifact['id']}/download")
        assert hashlib.sha256(download.content).hexdigest() == artifact["sha256"] == download.headers["X-Orchestrate-SHA256"]
        assert len(download.content) == artifact["size_bytes"]
        results = client.get(f"/results/{job['id']}").json()["results"]
        assert results and all(r["passed"] for r in results)


@pytest.mark.postgres
def test_the_api_on_postgresql(postgres_url, tmp_path, tiny_model) -> None:
    from orchestrator import db as farm_db
    from orchestrator import tokens
    from orchestrator.server import create_app
    from orchestrator.server.testing import ServerThread
    from orchestrator.services import Farm
    from orchestrator.testing import embedded_settings

    farm_db.upgrade(postgres_url)
    farm = Farm(embedded_settings(tmp_path / "home", database_url=postgres_url))
    alice = tokens.create_token(farm, "alice", "submit")
    with ServerThread(create_app(farm)) as server, httpx.Client(
        base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {alice.secret}"}, timeout=60
    ) as client:
        (job,) = upload(client, tiny_model).json()["jobs"]
        assert client.get(f"/jobs/{job['id']}").json()["submitted_by"] == "alice"
        assert client.post(f"/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
        assert [j["id"] for j in client.get("/jobs", params={"state": "cancelled"}).json()["jobs"]] == [job["id"]]
        tokens.revoke_token(farm, alice.info.id)
        time.sleep(farm.settings.api_token_cache_seconds + 0.1)
        assert client.get("/jobs").status_code == 401


def test_an_unexpected_error_is_500_internal_and_its_details_stay_in_the_log(api: Api, monkeypatch, caplog) -> None:
    from orchestrator import services

    def broken(farm, ref):
        raise RuntimeError("postgresql://farm:hunter2@db/farm exploded")

    monkeypatch.setattr(services, "get_job", broken)
    with api.client("reader") as client:
        response = client.get("/jobs/0123456789abcdef")
    assert response.status_code == 500
    assert response.json() == {"error": {"kind": "internal", "message": "internal server error; see the server's log", "exit_code": 1}}
    assert "RuntimeError" in caplog.text and "hunter2" not in response.text  # logged, not sent


def test_many_long_polls_hold_no_threads_and_status_still_answers(api: Api, tiny_model) -> None:
    import asyncio

    from orchestrator.server.app import THREADS

    with api.client("alice") as client:
        (job,) = upload(client, tiny_model, spec="validation:\n  samples: 9\n").json()["jobs"]
    headers = {"Authorization": f"Bearer {api.secrets['reader']}"}

    async def scenario() -> tuple[list[int], float]:
        limits = httpx.Limits(max_connections=THREADS + 40)
        async with httpx.AsyncClient(base_url=api.url + "/api/v1", headers=headers, timeout=30, limits=limits) as c:
            waits = [
                asyncio.create_task(c.get(f"/jobs/{job['id']}/wait", params={"timeout": 3}))
                for _ in range(THREADS + 20)
            ]
            await asyncio.sleep(1.0)
            started = time.monotonic()
            status = await c.get(f"/jobs/{job['id']}")
            took = time.monotonic() - started
            assert status.status_code == 200
            return [r.status_code for r in await asyncio.gather(*waits)], took

    codes, took = asyncio.run(scenario())
    assert codes == [200] * (THREADS + 20)
    assert took < 1.5, f"status took {took:.2f} s beside {THREADS + 20} long-polls"
