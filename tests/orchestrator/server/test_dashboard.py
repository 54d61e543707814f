"""The dashboard over plain HTTP (a real server, httpx): who gets in, what the pages carry and
escape, the rows' refresh, and the compare route behind the model page, the CLI and the client.
What a browser does with the pages is in test_dashboard_browser.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from click.testing import CliRunner

from orchestrator import models as m
from orchestrator import tokens
from orchestrator.cli import main
from orchestrator.compare import ModelComparison, model_comparison
from orchestrator.remote import DirectFarm, RemoteFarm
from orchestrator.server import create_app
from orchestrator.server.dashboard import COOKIE
from orchestrator.server.testing import ServerThread
from orchestrator.services import Farm
from orchestrator.settings import get_settings
from orchestrator.testing import embedded_settings
from tests.orchestrator.server.dashboard_farm import HOSTILE, MODEL, Seeded, seed

PAGES = ["/dashboard/jobs", "/dashboard/workers", f"/dashboard/models/{MODEL}", "/dashboard/jobs/rows", "/dashboard/workers/rows"]


@dataclass
class Site:
    url: str
    farm: Farm
    seeded: Seeded
    reader: str
    revoked: str

    def browser(self, secret: str | None = None) -> httpx.Client:
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        if secret is not None:
            client.cookies.set(COOKIE, secret, domain="127.0.0.1", path="/dashboard")
        return client


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    farm = Farm(embedded_settings(tmp_path_factory.mktemp("dashboard-http"), api_rate_limit=0, api_token_cache_seconds=0))
    seeded = seed(farm)
    reader = tokens.create_token(farm, "rita", "read").secret
    revoked = tokens.create_token(farm, "rex", "admin")
    tokens.revoke_token(farm, revoked.info.id)
    with ServerThread(create_app(farm)) as server:
        yield Site(server.url, farm, seeded, reader, revoked.secret)


def test_every_page_without_a_token_is_the_login_form_and_shows_no_data(site: Site) -> None:
    with site.browser() as client:
        for path in [*PAGES, f"/dashboard/artifacts/{site.seeded.older_fp32}", f"/dashboard/artifacts/{site.seeded.older_fp32}/download"]:
            response = client.get(path)
            assert response.status_code == 401, path
            # (The page names the address asked for, to return to it after signing in.)
            shown = response.text.replace(f'value="{path}"', "")
            for secret in (MODEL, "onnxruntime", "cpu-box-1", site.seeded.payload.decode()[:20]):
                assert secret not in shown, (path, secret)
            if not path.endswith("/rows"):
                assert 'id="login-form"' in response.text
        # Nor a revoked token, which also loses its cookie.
        response = client.get("/dashboard/jobs", cookies={COOKIE: site.revoked})
        assert response.status_code == 401 and "no longer valid" in response.text
        assert f'{COOKIE}=""' in response.headers["set-cookie"] and "Max-Age=0" in response.headers["set-cookie"]


def test_a_token_in_the_address_becomes_an_httponly_cookie_and_leaves_the_address(site: Site) -> None:
    with site.browser() as client:
        response = client.get(f"/dashboard/jobs?state=failed&token={site.reader}")
        assert response.status_code == 303 and response.headers["location"] == "/dashboard/jobs?state=failed"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}={site.reader};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
        wrong = client.get("/dashboard/jobs?token=orc_wrong")
        assert wrong.status_code == 401 and "not valid" in wrong.text and "set-cookie" not in wrong.headers


def test_login_form_signs_in_and_never_redirects_off_the_dashboard(site: Site) -> None:
    with site.browser() as client:
        for target, lands in (
            ("/dashboard/workers", "/dashboard/workers"),
            ("//evil.example/x", "/dashboard/jobs"),
            ("https://evil.example/dashboard/x", "/dashboard/jobs"),
            ("/dashboard/\\evil", "/dashboard/jobs"),
        ):
            response = client.post("/dashboard/login", data={"token": site.reader, "next": target})
            assert response.status_code == 303 and response.headers["location"] == lands, target
        refused = client.post("/dashboard/login", data={"token": site.revoked, "next": "/dashboard/workers"})
        assert refused.status_code == 401 and "set-cookie" not in refused.headers
        out = client.post("/dashboard/logout")
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]


def test_the_cookie_does_not_open_the_json_api(site: Site) -> None:
    with site.browser(site.reader) as client:
        assert client.get("/dashboard/jobs").status_code == 200
        response = client.get("/api/v1/jobs", cookies={COOKIE: site.reader})
        assert response.status_code == 401


def test_pages_carry_a_strict_content_security_policy_and_ship_their_assets(site: Site) -> None:
    with site.browser(site.reader) as client:
        page = client.get("/dashboard/jobs")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "http://" not in page.text.replace(site.url, "") and "https://" not in page.text
        for asset in ("/dashboard/static/dashboard.css", "/dashboard/static/dashboard.js"):
            assert client.get(asset).status_code == 200, asset
        assert client.get("/").headers["location"] == "/dashboard/jobs"


def test_a_hostile_model_name_is_escaped_on_every_page(site: Site) -> None:
    from markupsafe import escape

    with site.browser(site.reader) as client:
        pages = [
            client.get("/dashboard/jobs").text,
            client.get("/dashboard/models/" + httpx.URL(path=HOSTILE).raw_path.decode()).text,
            client.get(f"/dashboard/artifacts/{site.seeded.hostile_artifact}").text,
            client.get("/dashboard/jobs", params={"model": HOSTILE}).text,
        ]
    for text in pages:
        assert str(escape(HOSTILE)) in text
        assert "<img id=pwned" not in text and "<script>document" not in text


def test_rows_answer_304_until_a_job_changes(site: Site) -> None:
    from markupsafe import escape

    with site.browser(site.reader) as client:
        first = client.get("/dashboard/jobs/rows", params={"state": "queued"})
        etag = first.headers["etag"]
        assert first.status_code == 200 and site.seeded.queued_job in first.text
        page = client.get("/dashboard/jobs", params={"state": "queued"}).text
        # The page starts from the same rows, so its first refresh is a 304.
        assert f'data-etag="{escape(etag)}"' in page
        assert client.get("/dashboard/jobs/rows", params={"state": "queued"}, headers={"If-None-Match": etag}).status_code == 304
        with site.farm.session() as session:
            job = session.get(m.Job, site.seeded.queued_job)
            assert job is not None
            job.submitted_by = "carol"
        changed = client.get("/dashboard/jobs/rows", params={"state": "queued"}, headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag and "carol" in changed.text
        with site.farm.session() as session:
            job = session.get(m.Job, site.seeded.queued_job)
            assert job is not None
            job.submitted_by = "bob"


def test_unknown_things_are_error_pages_not_json(site: Site) -> None:
    with site.browser(site.reader) as client:
        for path, status, words in (
            ("/dashboard/models/no-such-model", 404, "no artifacts of model"),
            ("/dashboard/artifacts/ffffffffffff", 404, "no artifact"),
            ("/dashboard/jobs?state=exploded", 400, "unknown state"),
            ("/dashboard/nowhere", 404, "Not Found"),
        ):
            response = client.get(path)
            assert response.status_code == status and response.headers["content-type"].startswith("text/html"), path
            assert words in response.text, path


def test_the_dashboard_download_is_the_apis_stream(site: Site) -> None:
    with site.browser(site.reader) as client:
        response = client.get(f"/dashboard/artifacts/{site.seeded.older_fp32}/download")
    assert response.status_code == 200 and response.content == site.seeded.payload
    assert response.headers["x-orchestrate-sha256"] == hashlib.sha256(site.seeded.payload).hexdigest()


def test_jobs_api_filters_by_target_backend_and_submitter(site: Site) -> None:
    headers = {"Authorization": f"Bearer {site.reader}"}
    with httpx.Client(base_url=site.url + "/api/v1", headers=headers) as client:
        def ids(**params: str) -> set[str]:
            response = client.get("/jobs", params=params)
            assert response.status_code == 200, response.text
            return {job["id"] for job in response.json()["jobs"]}

        assert ids(submitted_by="bob") == {site.seeded.running_job, site.seeded.queued_job}
        assert ids(target="aarch64/orin", state="queued") == {site.seeded.queued_job}
        assert ids(target="aarch64.orin", backend="tensorrt") == ids(target="aarch64/orin")
        assert site.seeded.queued_job not in ids(target="aarch64")  # the portable target only
        assert len(ids(limit="2")) == 2 and ids(limit="2").isdisjoint(ids(limit="2", offset="2"))
        assert client.get("/jobs", params={"target": "sparc"}).json()["error"]["kind"] == "invalid_request"


def test_compare_over_http_is_the_same_comparison_as_direct(site: Site) -> None:
    remote = RemoteFarm(site.url, site.reader)
    try:
        for limit, offset in ((50, 0), (2, 0), (2, 4)):
            over_http = remote.compare(MODEL, limit=limit, offset=offset)
            assert over_http == DirectFarm(site.farm).compare(MODEL, limit=limit, offset=offset)
        full = remote.compare(MODEL)
        assert full.total == 5 and len(full.groups) == 4 and len(full.artifacts) == 5
        assert [g.count for g in full.groups if (g.target, g.precision) == ("x86_64", "fp32")] == [2]
        by_target = {(c.target, c.precision): c for c in full.newest}
        assert by_target[("aarch64/orin", "fp16")].speedup == 9.0
        assert by_target[("x86_64/sm90", "fp16")].speedup is None
        assert [a.artifact_id for a in remote.compare(MODEL, limit=2, offset=4).artifacts] == [site.seeded.older_fp32]
        assert ModelComparison.from_dict(json.loads(json.dumps(full.to_dict()))) == full
        assert remote.compare("no-such-model").total == 0
    finally:
        remote.close()


def test_model_comparison_reads_a_fixed_number_of_queries(site: Site) -> None:
    """However many artifacts: the groups are counted in SQL and one page is loaded."""
    from sqlalchemy import event

    from orchestrator.db import get_engine

    engine = get_engine(site.farm.settings.database_url)
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        model_comparison(site.farm, MODEL, limit=50)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    selects = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    # model ids (once per call below), groups, newest per group, one page, results of the page
    assert 4 <= len(selects) <= 9, selects


def test_cli_compare_prints_the_same_through_the_server() -> None:
    farm = Farm(get_settings())
    seed(farm)
    secret = tokens.create_token(farm, "rita", "read").secret
    runner = CliRunner()
    with ServerThread(create_app(farm)) as server:
        env = {"ORCHESTRATE_API_URL": server.url, "ORCHESTRATE_TOKEN": secret}
        for args in (["compare", MODEL, "--json"], ["compare", MODEL], ["compare", "nothing-here"]):
            direct, remote = runner.invoke(main, args), runner.invoke(main, args, env=env)
            assert (remote.exit_code, remote.stdout) == (direct.exit_code, direct.stdout) == (0, direct.stdout), args
    rows = json.loads(runner.invoke(main, ["compare", MODEL, "--json"]).stdout)
    # Newest first: the sm90 build without speed figures, then orin, int8, fp32 and the older fp32.
    assert [r["speedup"] for r in rows] == [None, 9.0, 4.0, 2.0, 1.6]
