"""Soak: many jobs across several worker processes while faults are injected on a schedule.

    python benchmarks/soak.py [--jobs 1000] [--workers 4] [--builds 250] [--json PATH]

Runs on servers of its own (a ``redis-server`` and a PostgreSQL cluster on free loopback ports
in a temporary folder; the machine's shared ones are never touched). Every job is a one-op model
with a spec that only ``--builds`` distinct builds share, submitted in an interleaved order, so
each build is compiled once and its twins are answered from it (by the claim, or by submit once
the artifact exists). Submissions go on in a thread of their own (one refused during an outage is
made again half a second later); as the builds done pass the schedule's marks (10, 25, 40, 55
and 70 %; faults at least ``--fault-gap`` s apart), it injects:

* ``kill``: SIGKILL of a whole worker (its Celery parent and pool process) while it builds; a
  new worker takes its place, and another worker's reaper must queue the job again;
* ``broker``: Redis stopped and started (down for ``--broker-down`` s);
* ``database``: PostgreSQL stopped and started (down for ``--database-down`` s).

It reports jobs completed, lost (not succeeded, or failed without a reason), duplicates (builds
recorded more than once), attempts, and for each fault the time to recover: from the fault until
the farm completes a job again, and, for kills, until the job the dead worker held is done.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from compiler import CompileSpec  # noqa: E402
from orchestrator import db as farm_db  # noqa: E402
from orchestrator import models as m  # noqa: E402
from orchestrator import services  # noqa: E402
from orchestrator.routing import Target  # noqa: E402
from orchestrator.samples import tiny_program  # noqa: E402
from orchestrator.services import Farm, UnreachableError  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.testing import (  # noqa: E402
    PostgresServer,
    RedisServer,
    WorkerProcess,
    settings_env,
)

SCHEDULE = ((0.10, "kill"), (0.25, "broker"), (0.40, "kill"), (0.55, "database"), (0.70, "kill"))


@dataclass
class Fault:
    kind: str
    at_completed: int
    injected_at: float
    detail: str = ""
    #: seconds from the fault (its end, for a restart) until a job completed again
    next_completion_s: float | None = None
    #: kills: seconds until the job the dead worker held was queued again (by another worker's
    #: reaper), built again (None: a twin's artifact answered it), and done (a reaped job goes
    #: to the back of its queue)
    held_job_requeued_s: float | None = None
    held_job_restarted_s: float | None = None
    held_job_done_s: float | None = None
    held_job: str | None = None
    ended_at: float = field(default=0.0)


def spec_for(build: int) -> CompileSpec:
    return services.resolve_spec({"validation": {"samples": 1, "atol": 1e-3 + build * 1e-9}})


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def counts(farm: Farm) -> Counter[str] | None:
    """Jobs by state, and ``built`` (artifacts), or None while the database is down."""
    try:
        with farm.session() as session:
            rows = session.execute(select(m.Job.state, func.count()).group_by(m.Job.state)).all()
            built = session.scalar(select(func.count()).select_from(m.Artifact)) or 0
    except UnreachableError:
        return None
    found = Counter({state.value: int(n) for state, n in rows})
    found["built"] = int(built)
    return found


def last_finished(farm: Farm) -> float | None:
    try:
        with farm.session() as session:
            value = session.scalar(select(func.max(m.Job.finished_at)).where(m.Job.state == m.JobState.SUCCEEDED))
    except UnreachableError:
        return None
    return value.timestamp() if value is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--builds", type=int, default=250, help="distinct builds the jobs share")
    parser.add_argument("--broker-down", type=float, default=3.0)
    parser.add_argument("--database-down", type=float, default=5.0)
    parser.add_argument("--heartbeat", type=float, default=1.0, help="worker heartbeat interval (s)")
    parser.add_argument("--fault-gap", type=float, default=15.0, help="least seconds between two faults")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="orchestrate-soak-"))
    redis = RedisServer(root / "redis").start()
    postgres = PostgresServer(root / "pg").init().start()
    workers: list[WorkerProcess] = []
    faults: list[Fault] = []
    try:
        settings = Settings.embedded(
            root / "home",
            database_url=postgres.create_database("soak"),
            broker_url=redis.url(),
            result_backend=redis.url(),
            heartbeat_interval=args.heartbeat,
            soft_time_limit=100.0,
            hard_time_limit=120.0,
        )
        farm_db.upgrade(settings.database_url)
        farm = Farm(settings)
        env = settings_env(settings)
        model = root / "tiny.pt2"
        torch.export.save(tiny_program(), model)

        def new_worker(wait: bool = True) -> WorkerProcess:
            worker = WorkerProcess(env, pool="prefork", log_path=root / f"worker-{len(workers)}.log", loglevel="INFO")
            workers.append(worker)
            if wait:
                return worker.start(settings, timeout=300)
            # a replacement comes up while the soak goes on (starting takes seconds)
            threading.Thread(target=worker.start, args=(settings, 300), daemon=True).start()
            return worker

        live = [new_worker() for _ in range(args.workers)]
        print(f"{args.workers} workers up; submitting {args.jobs} jobs over {args.builds} builds", flush=True)
        t0 = time.time()
        job_ids: list[str] = []
        refused: list[str] = []
        submitted = 0.0

        def submit_all() -> None:
            # Faults hit the submissions too: a submit the broker or database refuses leaves
            # nothing behind (exit 3 in the CLI), so it is simply made again a moment later.
            nonlocal submitted
            for i in range(args.jobs):
                while True:
                    try:
                        (job,) = services.submit(farm, model, [Target("x86_64")], spec_for(i % args.builds)).jobs
                        break
                    except UnreachableError as exc:
                        refused.append(str(exc).split(":")[0])
                        time.sleep(0.5)
                job_ids.append(job.id)
            submitted = time.time() - t0
            print(f"submitted in {submitted:.1f} s ({len(refused)} submits refused during outages, made again)", flush=True)

        submitter = threading.Thread(target=submit_all, daemon=True)
        submitter.start()

        schedule = list(SCHEDULE)
        pending: list[Fault] = []
        done_at = None
        while time.time() - t0 < args.timeout:
            state = counts(farm)
            if state is not None:
                completed = state["succeeded"] + state["failed"] + state["cancelled"]
                if completed >= args.jobs and not submitter.is_alive():
                    done_at = time.time()
                    break
                newest = last_finished(farm)
                for fault in pending:
                    if fault.next_completion_s is None and newest is not None and newest > fault.ended_at:
                        fault.next_completion_s = round(newest - fault.ended_at, 2)
                last_fault = faults[-1].ended_at if faults else 0.0
                # marks are fractions of the builds: twins complete in bursts once theirs is built
                due = schedule and state["built"] >= schedule[0][0] * args.builds
                if due and time.time() - last_fault >= args.fault_gap:
                    _, kind = schedule.pop(0)
                    fault = Fault(kind, completed, time.time())
                    fault.detail = f"at {time.time() - t0:.1f} s"
                    if kind == "kill":
                        running = [j for j in services.list_jobs(farm, state="running", limit=50) if j.worker]
                        names = {w.name: w for w in live}
                        victim_job = next((j for j in running if j.worker in names), None)
                        victim = names[victim_job.worker] if victim_job else live[0]  # type: ignore[index]
                        assert victim.process is not None
                        for pid in [*children(victim.process.pid), victim.process.pid]:
                            os.kill(pid, signal.SIGKILL)
                        victim.process.wait()
                        fault.held_job = victim_job.id if victim_job else None
                        fault.detail += f": killed {victim.name}" + (f" holding job {victim_job.id[:12]}" if victim_job else "")
                        live.remove(victim)
                        fault.ended_at = time.time()
                        live.append(new_worker(wait=False))
                    elif kind == "broker":
                        redis.restart(down_for=args.broker_down)
                        fault.ended_at = time.time()
                        fault.detail += f": Redis down {args.broker_down:g} s"
                    else:
                        postgres.restart(down_for=args.database_down)
                        fault.ended_at = time.time()
                        fault.detail += f": PostgreSQL down {args.database_down:g} s"
                    print(f"[{time.time() - t0:6.1f} s] {fault.kind}: {fault.detail} at {completed} completed", flush=True)
                    faults.append(fault)
                    pending.append(fault)
            time.sleep(0.5)
        elapsed = (done_at or time.time()) - t0

        with farm.session() as session:
            jobs = list(session.scalars(select(m.Job).where(m.Job.id.in_(job_ids))).unique())
            artifacts = list(session.scalars(select(m.Artifact)).unique())
            states = Counter(j.state.value for j in jobs)
            unexplained = [j.id for j in jobs if j.state == m.JobState.FAILED and not (j.error_kind and j.error_message)]
            stuck = [j.id for j in jobs if j.state in (m.JobState.QUEUED, m.JobState.RUNNING)]
            keys = Counter(a.build_key for a in artifacts)
            compiled_by = Counter(a.job_id for a in artifacts)
            attempts = Counter(j.attempts for j in jobs)
            # answered without a compile of their own: by submit (the artifact existed) or by
            # the claim (a twin had built it meanwhile)
            reused = sum(1 for j in jobs if j.state == m.JobState.SUCCEEDED and j.artifact and j.artifact.job_id != j.id)
            failed_kinds = Counter(j.error_kind for j in jobs if j.state == m.JobState.FAILED)
            wrong_artifact = [
                j.id for j in jobs
                if j.state == m.JobState.SUCCEEDED and (j.artifact is None or j.artifact.build_key != _key(j))
            ]
        with farm.session() as session:
            for fault in faults:
                held = session.get(m.Job, fault.held_job) if fault.held_job else None
                if held is None:
                    continue

                def since(moment: object, fault: Fault = fault) -> float | None:
                    return round(moment.timestamp() - fault.injected_at, 2) if moment is not None else None  # type: ignore[attr-defined]

                fault.held_job_requeued_s = since(held.queued_at)
                restarted = since(held.started_at)
                fault.held_job_restarted_s = restarted if restarted is not None and restarted > 0 else None
                fault.held_job_done_s = since(held.finished_at)
        result = {
            "jobs": args.jobs,
            "workers": args.workers,
            "builds": args.builds,
            "elapsed_s": round(elapsed, 1),
            "submit_s": round(submitted, 1),
            "submits_refused_then_made_again": len(refused),
            "refusals": dict(Counter(refused)),
            "states": dict(states),
            # every row, including any a refused submission might have left behind
            "jobs_in_database": sum(v for k, v in (counts(farm) or Counter()).items() if k != "built"),
            "completed": states["succeeded"],
            "lost": len(stuck) + len(unexplained) + (args.jobs - len(jobs)),
            "stuck": stuck[:20],
            "failed_kinds": dict(failed_kinds),
            "duplicates": sum(n - 1 for n in keys.values() if n > 1),
            "artifacts": len(artifacts),
            "distinct_builders": len(compiled_by),
            "compiled": len(compiled_by),
            "answered_from_a_twin": reused,
            "succeeded_pointing_elsewhere": len(wrong_artifact),
            "attempts": {str(k): v for k, v in sorted(attempts.items())},
            "faults": [
                {**asdict(f), "injected_at": round(f.injected_at - t0, 1), "ended_at": round(f.ended_at - t0, 1)}
                for f in faults
            ],
        }
    finally:
        for worker in workers:
            worker.stop()
        postgres.stop("immediate")
        redis.stop(kill=True)

    print(json.dumps(result, indent=2))
    recoveries = [f["next_completion_s"] for f in result["faults"] if f["next_completion_s"] is not None]
    if recoveries:
        print(f"median time to the next completion after a fault: {statistics.median(recoveries):.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(f"(logs and servers' files in {root})")


def _key(job: m.Job) -> str:
    """The build key a job's artifact must carry: its model, spec and target with the version
    the artifact was built with."""
    assert job.artifact is not None
    return m.build_key(
        model_sha256=job.model.sha256,
        spec_sha256=job.spec.sha256,
        backend=job.backend,
        backend_version=job.artifact.backend_version,
        arch=job.arch,
        device_class=job.device_class,
    )


if __name__ == "__main__":
    main()
