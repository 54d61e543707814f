"""The worker's Prometheus collector on hand-made job rows: counted once, by phase and kind."""

import json
from datetime import timedelta

from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from orchestrator import models as m
from orchestrator.cli import main
from orchestrator.cli._common import CliState
from orchestrator.metrics import WorkerMetrics

WORKER = "w1@host"


def _scrape(registry):
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _submit(farm, model, arch="x86_64"):
    result = CliRunner().invoke(main, ["submit", str(model), "--arch", arch, "--json"],
                                obj=CliState(farm=farm))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["jobs"][0]["id"]


def _finish(farm, job_id, state, *, worker=WORKER, kind=None, timings=None):
    with farm.session() as session:
        session.execute(update(m.Job).where(m.Job.id == job_id).values(
            state=state, worker_name=worker, error_kind=kind, phase_timings=timings or {},
            started_at=m.utcnow() - timedelta(seconds=5), finished_at=m.utcnow()))


def test_collector_counts_this_workers_finished_jobs_once_by_phase_and_failure_kind(farm, tiny_model):
    registry = CollectorRegistry()
    registry.register(WorkerMetrics(farm, WORKER, ["compile.x86_64", "compile.x86_64.sm90"],
                                    since=m.utcnow() - timedelta(minutes=1)))
    ok, bad, other, queued = (_submit(farm, tiny_model) for _ in range(4))
    _submit(farm, tiny_model, arch="aarch64")
    _finish(farm, ok, m.JobState.SUCCEEDED, timings={"fetch": 0.02, "build": 3.0})
    _finish(farm, bad, m.JobState.FAILED, kind="unsupported_op", timings={"fetch": 0.01})
    _finish(farm, other, m.JobState.FAILED, worker="someone-else", kind="timeout")

    first = _scrape(registry)
    assert first[("orchestrate_metrics_database_up", ())] == 1
    assert first[("orchestrate_jobs", (("state", "queued"),))] == 2
    assert first[("orchestrate_jobs", (("state", "failed"),))] == 2  # farm-wide
    assert first[("orchestrate_queue_depth", (("queue", "compile.x86_64"),))] == 1
    assert first[("orchestrate_queue_depth", (("queue", "compile.aarch64"),))] == 1
    assert first[("orchestrate_queue_depth", (("queue", "compile.x86_64.sm90"),))] == 0
    assert first[("orchestrate_compile_phase_seconds_count", (("phase", "fetch"),))] == 2
    assert first[("orchestrate_compile_phase_seconds_sum", (("phase", "build"),))] == 3.0
    assert first[("orchestrate_compile_phase_seconds_bucket", (("le", "5.0"), ("phase", "build")))] == 1
    assert first[("orchestrate_engine_build_failures_total", (("kind", "unsupported_op"),))] == 1
    assert ("orchestrate_engine_build_failures_total", (("kind", "timeout"),)) not in first
    assert first[("orchestrate_worker_jobs_finished_total", (("state", "succeeded"),))] == 1

    # A second scrape counts nothing twice; a job finished since is added.
    with farm.session() as session:
        session.execute(update(m.Job).where(m.Job.id == queued).values(
            state=m.JobState.RUNNING, worker_name=WORKER))
    assert _scrape(registry)[("orchestrate_worker_running_jobs", ())] == 1
    _finish(farm, queued, m.JobState.FAILED, kind="unsupported_op")
    again = _scrape(registry)
    assert again[("orchestrate_engine_build_failures_total", (("kind", "unsupported_op"),))] == 2
    assert again[("orchestrate_compile_phase_seconds_count", (("phase", "fetch"),))] == 2
    assert again[("orchestrate_worker_running_jobs", ())] == 0


def test_collector_reports_an_unreachable_database_instead_of_failing_the_scrape(tmp_path):
    from orchestrator.services import Farm
    from orchestrator.testing import embedded_settings

    settings = embedded_settings(tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:1/x")
    registry = CollectorRegistry()
    registry.register(WorkerMetrics(Farm(settings), WORKER))
    assert _scrape(registry) == {("orchestrate_metrics_database_up", ()): 0}
