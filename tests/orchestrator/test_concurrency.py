"""Identical work submitted at once is compiled once, on SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import func, select

from orchestrator import db as farm_db
from orchestrator import models as m
from orchestrator import services
from orchestrator.routing import Target
from orchestrator.services import Farm
from orchestrator.testing import embedded_settings

SUBMITTERS = 50


def test_fifty_identical_submissions_at_once_compile_once(database_url: str, tmp_path: Path, tiny_model: Path) -> None:
    farm_db.upgrade(database_url)
    farm = Farm(embedded_settings(tmp_path / "home", database_url=database_url), eager=True)
    spec = services.resolve_spec({"validation": {"samples": 2}})
    answers: list[services.JobInfo] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(SUBMITTERS)

    def submit() -> None:
        try:
            barrier.wait()
            answers.extend(services.submit(farm, tiny_model, [Target("x86_64")], spec).jobs)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert errors == []
    assert len(answers) == SUBMITTERS
    finals = [services.get_job(farm, job.id) for job in answers]
    assert {job.state for job in finals} == {"succeeded"}, {job.error_message for job in finals}
    assert len({job.artifact_id for job in finals}) == 1  # fifty answers, one artifact
    with farm.session() as session:
        assert session.scalar(select(func.count()).select_from(m.Artifact)) == 1
        # a claim (attempts > 0) is a compiler run: reuse of a cached artifact happens before it
        compiled = session.scalar(select(func.count()).select_from(m.Job).where(m.Job.attempts > 0))
    # the cache answers the late submits; the queued ones wait for the one that compiles (its
    # twins) and then reuse its artifact
    assert compiled == 1
