"""Throughput: N jobs of a one-op model across 4 worker processes on this machine.

    python benchmarks/farm_throughput.py [--jobs 1000] [--workers 4] [--database-url URL]

Checks that no job is lost (every job succeeded) or duplicated (one artifact per job, one
attempt each), and reports jobs/s and the share of worker time spent outside the compiler
(``compiler.compile`` + ``save`` + ``validate``), i.e. fetching, uploading, database writes.
Every job has a distinct spec (validation tolerance) so none is answered from the cache.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from benchmarks.farm_overhead import redis_farm, spec_for  # noqa: E402
from orchestrator import models as m  # noqa: E402
from orchestrator import services  # noqa: E402
from orchestrator.routing import Target  # noqa: E402
from orchestrator.testing import (  # noqa: E402
    WorkerProcess,
    settings_env,
)

INSIDE_COMPILER = ("frontend", "lowering", "partitioning", "conversion", "build", "runtime", "save", "validate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    args = parser.parse_args()

    with redis_farm(args.database_url) as (tmp, settings, farm, model):
        env = settings_env(settings)
        workers = [
            WorkerProcess(env, arch="x86_64", log_path=tmp / f"w{i}.log")
            for i in range(args.workers)
        ]
        try:
            for worker in workers:
                worker.start(settings, timeout=300)
            t0 = time.time()
            job_ids: list[str] = []
            for i in range(args.jobs):
                job_ids.extend(j.id for j in services.submit(farm, model, [Target("x86_64")], spec_for(i)).jobs)
            submitted = time.time()
            while True:
                with farm.session() as session:
                    open_jobs = session.scalar(
                        select(func.count()).select_from(m.Job).where(
                            m.Job.state.in_([m.JobState.QUEUED, m.JobState.RUNNING])
                        )
                    )
                if not open_jobs:
                    break
                time.sleep(0.5)
            done = time.time()
            with farm.session() as session:
                jobs = session.scalars(select(m.Job).where(m.Job.id.in_(job_ids))).unique().all()
                states = {j.state.value for j in jobs}
                attempts = sorted({j.attempts for j in jobs})
                artifacts = session.scalar(select(func.count()).select_from(m.Artifact)) or 0
                distinct_builders = session.scalar(select(func.count(func.distinct(m.Artifact.job_id)))) or 0
                busy = sum(
                    (j.finished_at - j.started_at).total_seconds() for j in jobs if j.started_at and j.finished_at
                )
                inside = sum(sum(v for k, v in j.phase_timings.items() if k in INSIDE_COMPILER) for j in jobs)
                per_worker: dict[str | None, int] = {}
                for j in jobs:
                    per_worker[j.worker_name] = per_worker.get(j.worker_name, 0) + 1
        finally:
            for worker in workers:
                worker.stop()

    print(f"jobs: {args.jobs}, worker processes: {args.workers} (solo pool each)")
    print(f"states: {sorted(states)}; attempts per job: {attempts}")
    print(f"artifacts: {artifacts}, built by {distinct_builders} distinct jobs "
          f"-> lost: {args.jobs - artifacts}, duplicated: {artifacts - distinct_builders}")
    print(f"jobs per worker: {sorted(per_worker.values())}")
    print(f"submitting took {submitted - t0:.1f} s; all done after {done - t0:.1f} s")
    print(f"throughput: {args.jobs / (done - t0):.2f} jobs/s")
    print(f"worker time outside the compiler: {100 * (1 - inside / busy):.1f}% "
          f"(claim to record: {busy:.1f} s, compiler: {inside:.1f} s)")


if __name__ == "__main__":
    main()
