"""Orchestration overhead per job on Redis, and cache-hit latency and rate from one client.

    python benchmarks/farm_overhead.py [--jobs 30] [--cache-hits 500] [--database-url URL]

* dispatch: ``submit`` returned -> the worker claimed the job (``started_at``): broker + worker.
* completion: the worker's last phase ended -> ``orchestrate status`` (the services call behind
  it) shows the job succeeded: recording the artifact and results + the client seeing it.
* cache hit: ``submit`` of a model + spec that already has an artifact, end to end in-process.

Each job uses the one-op model with a distinct spec (a different validation tolerance), so no
job is a cache hit of another while the compiler does the same work for every job.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator import services  # noqa: E402
from orchestrator.routing import Target  # noqa: E402
from orchestrator.services import Farm  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.testing import (  # noqa: E402
    WorkerProcess,
    redis_reachable,
    redis_settings,
    reserved_redis_db,
    settings_env,
)


def one_op_model(path: Path) -> Path:
    import torch

    class Relu(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x)

    torch.export.save(torch.export.export(Relu(), (torch.randn(4, 8),)), path)
    return path


def spec_for(i: int):
    return services.resolve_spec({"validation": {"samples": 1, "atol": 1e-3 + i * 1e-9}})


def ts(value: str | None) -> float:
    assert value is not None
    return datetime.fromisoformat(value).timestamp()


@contextlib.contextmanager
def redis_farm(database_url: str | None) -> Iterator[tuple[Path, Settings, Farm, Path]]:
    """A throw-away farm on the local Redis (its own reserved DB) and SQLite in a temporary
    folder, or ``database_url``: (folder, settings, farm, the one-op model's .pt2)."""
    if not redis_reachable():
        sys.exit("Redis is not reachable on 127.0.0.1:6379")
    with tempfile.TemporaryDirectory() as name, reserved_redis_db() as db:
        tmp = Path(name)
        overrides = {"database_url": database_url} if database_url else {}
        settings = redis_settings(tmp / "home", db, **overrides)
        yield tmp, settings, Farm(settings), one_op_model(tmp / "relu.pt2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--cache-hits", type=int, default=500)
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    args = parser.parse_args()

    with redis_farm(args.database_url) as (tmp, settings, farm, model):
        target = [Target("x86_64")]
        with WorkerProcess(settings_env(settings), arch="x86_64", log_path=tmp / "w.log") as worker:
            worker.start(settings)
            # Warm-up: the first compile in a process pays one-time imports and caches.
            services.wait(farm, services.submit(farm, model, target, spec_for(-1)).jobs[0].id, timeout=300)
            dispatch, completion, submit_ms = [], [], []
            for i in range(args.jobs):
                t0 = time.time()
                (job,) = services.submit(farm, model, target, spec_for(i)).jobs
                t1 = time.time()
                submit_ms.append((t1 - t0) * 1000)
                while True:
                    info = services.get_job(farm, job.id)
                    if info.state == "succeeded":
                        visible = time.time()
                        break
                    if info.state == "failed":
                        sys.exit(f"job failed: {info.error_kind}: {info.error_message}")
                    time.sleep(0.002)
                started = ts(info.started_at)
                work = sum(info.phase_timings.values())
                dispatch.append((started - t1) * 1000)
                completion.append((visible - (started + work)) * 1000)

            # Cache hits: the same model + spec as a finished job, answered without a build.
            hit_ms = []
            t_all = time.perf_counter()
            for _ in range(args.cache_hits):
                t0 = time.perf_counter()
                (job,) = services.submit(farm, model, target, spec_for(0)).jobs
                hit_ms.append((time.perf_counter() - t0) * 1000)
                assert job.cached and job.state == "succeeded"
            rate = args.cache_hits / (time.perf_counter() - t_all)

    def med(values: list[float]) -> str:
        return f"median {statistics.median(values):.1f} ms (p90 {statistics.quantiles(values, n=10)[-1]:.1f})"

    print(f"database: {'SQLite (embedded)' if not args.database_url else 'given URL'}; broker: Redis")
    print(f"jobs: {args.jobs} one-op builds, 1 worker (solo pool)")
    print(f"submit call (hash, validate, rows, enqueue): {med(submit_ms)}")
    print(f"submit returned -> worker starts the compile: {med(dispatch)}")
    print(f"compile done -> visible to status:            {med(completion)}")
    print(f"cache hit end to end:                         {med(hit_ms)}")
    print(f"cache-hit answers/s from one client:          {rate:.0f}")


if __name__ == "__main__":
    main()
