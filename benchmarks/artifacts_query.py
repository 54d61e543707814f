"""How fast `orchestrate artifacts list --model X --arch Y` answers on a database of 100,000 artifacts.

Fills a fresh database (SQLite by default; PostgreSQL with ``--postgres``) with artifacts spread
over many models, architectures, device classes, backends and precisions — one model "hot", with
a tenth of all rows — then times ``orchestrator.models.list_artifacts`` (the query behind the CLI,
ORM loading included) for random filters and prints the median and 95th percentile.

    .venv/bin/python benchmarks/artifacts_query.py
    .venv/bin/python benchmarks/artifacts_query.py --postgres   # 127.0.0.1:5432, database test
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator import db as farm_db  # noqa: E402
from orchestrator.models import Artifact, CompileSpecRow, Job, Model, list_artifacts  # noqa: E402
from orchestrator.testing import scratch_postgres_schema  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGETS = [
    ("x86_64", None, "onnxruntime"),
    ("x86_64", "sm80", "tensorrt"),
    ("x86_64", "sm90", "tensorrt"),
    ("aarch64", None, "onnxruntime"),
    ("aarch64", "orin", "tensorrt"),
    ("aarch64", "xavier", "tensorrt"),
]
PRECISIONS = ["fp32", "fp16", "bf16", "int8"]
CHUNK = 20_000


def _hex() -> str:
    return uuid.uuid4().hex


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="artifacts-bench-") as folder:
        yield f"sqlite:///{folder}/bench.db"


def fill(engine: Engine, rows: int, models: int, seed: int) -> list[str]:
    """Insert ``rows`` artifacts (and their jobs); returns the model names."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    names = [f"model-{i:05d}" for i in range(models)]
    model_rows = [
        {
            "id": _hex(),
            "name": name,
            "sha256": _hex() * 2,
            "size_bytes": rng.randint(10**5, 10**9),
            "uri": f"s3://models/{name}",
            "created_at": now - timedelta(days=400),
        }
        for name in names
    ]
    spec_rows = [
        {"id": _hex(), "sha256": _hex() * 2, "canonical_json": f'{{"n": {i}}}', "created_at": now}
        for i in range(20)
    ]
    with engine.begin() as connection:
        connection.execute(insert(Model), model_rows)
        connection.execute(insert(CompileSpecRow), spec_rows)
    hot = model_rows[0]["id"]
    for start in range(0, rows, CHUNK):
        jobs, artifacts = [], []
        for _ in range(start, min(rows, start + CHUNK)):
            # One model in ten builds is the hot model: the worst case for a model filter.
            model_id = hot if rng.random() < 0.1 else rng.choice(model_rows)["id"]
            spec_id = rng.choice(spec_rows)["id"]
            arch, device_class, backend = rng.choice(TARGETS)
            precision = rng.choice(PRECISIONS)
            created = now - timedelta(seconds=rng.randint(0, 365 * 24 * 3600))
            job_id = _hex()
            jobs.append(
                {
                    "id": job_id,
                    "model_id": model_id,
                    "spec_id": spec_id,
                    "arch": arch,
                    "device_class": device_class,
                    "queue": f"compile.{arch}" + (f".{device_class}" if device_class else ""),
                    "backend": backend,
                    "precision": precision,
                    "state": "succeeded",
                    "phase_timings": {"build": 1.0},
                    "attempts": 1,
                    "cache_key": _hex() * 2,
                    "created_at": created,
                }
            )
            artifacts.append(
                {
                    "id": _hex(),
                    "job_id": job_id,
                    "model_id": model_id,
                    "spec_id": spec_id,
                    "backend": backend,
                    "backend_version": "10.3.0" if backend == "tensorrt" else "1.32.0",
                    "arch": arch,
                    "device_class": device_class,
                    "precision": precision,
                    "uri": f"s3://engines/sha256/{_hex()}",
                    "sha256": _hex() * 2,
                    "size_bytes": rng.randint(10**5, 10**9),
                    "partition_stats": {"num_engines": 1},
                    "build_key": _hex() * 2,
                    "created_at": created,
                }
            )
        with engine.begin() as connection:
            connection.execute(insert(Job), jobs)
            connection.execute(insert(Artifact), artifacts)
    with engine.begin() as connection:
        # Planner statistics, as autovacuum (PostgreSQL) or `PRAGMA optimize` (SQLite) keep them.
        connection.exec_driver_sql("ANALYZE")
    return names


def time_queries(
    engine: Engine, make_filters: Callable[[], dict[str, Any]], repeat: int
) -> tuple[float, float, int]:
    samples = []
    found = 0
    for _ in range(repeat):
        filters = make_filters()
        with Session(engine) as session:
            started = time.perf_counter()
            rows = list_artifacts(session, **filters)
            samples.append((time.perf_counter() - started) * 1000)
            found += len(rows)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    return statistics.median(samples), p95, found // repeat


def run(url: str, rows: int, models: int, repeat: int, seed: int) -> None:
    farm_db.upgrade(url)
    engine = farm_db.make_engine(url)
    started = time.perf_counter()
    names = fill(engine, rows, models, seed)
    print(
        f"{engine.dialect.name}: {rows} artifacts over {models} models, filled in "
        f"{time.perf_counter() - started:.1f} s"
    )
    rng = random.Random(seed + 1)
    arches = sorted({arch for arch, _, _ in TARGETS})
    cases: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("--model X --arch Y", lambda: {"model": rng.choice(names), "arch": rng.choice(arches)}),
        ("--model HOT --arch Y", lambda: {"model": names[0], "arch": rng.choice(arches)}),
        (
            "--model X --arch Y --device-class --backend --precision",
            lambda: {
                "model": rng.choice(names),
                "arch": "aarch64",
                "device_class": "orin",
                "backend": "tensorrt",
                "precision": rng.choice(PRECISIONS),
            },
        ),
        (
            "--model HOT --arch Y --device-class --backend --precision",
            lambda: {
                "model": names[0],
                "arch": "aarch64",
                "device_class": "orin",
                "backend": "tensorrt",
                "precision": rng.choice(PRECISIONS),
            },
        ),
        ("--arch Y", lambda: {"arch": rng.choice(arches)}),
        ("(no filter)", lambda: {}),
    ]
    # Warm the connection pool and the statement cache, as a running CLI process would.
    time_queries(engine, cases[0][1], 5)
    print(f"{'filters':<58} {'median ms':>10} {'p95 ms':>8} {'rows':>5}")
    for label, make in cases:
        median, p95, found = time_queries(engine, make, repeat)
        print(f"{label:<58} {median:>10.2f} {p95:>8.2f} {found:>5}")
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_POSTGRES,
        metavar="URL",
        help=f"also run on PostgreSQL (default URL {DEFAULT_POSTGRES}) in a throwaway schema",
    )
    args = parser.parse_args(argv)
    with sqlite_database() as url:
        run(url, args.rows, args.models, args.repeat, args.seed)
    if args.postgres:
        print()
        with scratch_postgres_schema(args.postgres, prefix="bench_") as url:
            run(url, args.rows, args.models, args.repeat, args.seed)


if __name__ == "__main__":
    main()
