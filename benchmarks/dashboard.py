"""How fast the dashboard's model page answers for a model with 10,000 artifacts.

Fills a fresh farm database (SQLite by default; PostgreSQL with ``--postgres``) with one model
built ``--artifacts`` times across 6 targets x 4 precisions, each artifact with its job, three
accuracy results and the four ``(performance)`` results, next to ``--noise`` artifacts of other
models; then times, against a real server (uvicorn in a thread, a read token in the
dashboard's cookie):

- ``model_comparison`` in-process (the service call behind the page and ``GET /api/v1/compare``);
- ``GET /dashboard/models/NAME`` (first page, and the last page: the deepest OFFSET);
- ``GET /api/v1/compare/NAME``;
- ``GET /dashboard/jobs`` and ``GET /dashboard/jobs?model=NAME`` over the same jobs.

    PYTHONPATH=. .venv/bin/python benchmarks/dashboard.py
    PYTHONPATH=. .venv/bin/python benchmarks/dashboard.py --postgres   # 127.0.0.1:5432, database test
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator import db as farm_db  # noqa: E402
from orchestrator import tokens  # noqa: E402
from orchestrator.compare import PERFORMANCE_OUTPUT, model_comparison  # noqa: E402
from orchestrator.models import Artifact, CompileSpecRow, Job, Model, ValidationResult  # noqa: E402
from orchestrator.server import create_app  # noqa: E402
from orchestrator.server.dashboard import COOKIE, PAGE_ROWS  # noqa: E402
from orchestrator.server.testing import ServerThread  # noqa: E402
from orchestrator.services import Farm  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.testing import scratch_postgres_schema  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MODEL = "hot-model"
TARGETS = [
    ("x86_64", None, "onnxruntime"),
    ("x86_64", "sm90", "aotinductor"),
    ("x86_64", "sm80", "tensorrt"),
    ("aarch64", None, "onnxruntime"),
    ("aarch64", "orin", "tensorrt"),
    ("aarch64", "xavier", "tensorrt"),
]
PRECISIONS = ["fp32", "fp16", "bf16", "int8"]
CHUNK = 5_000


def _hex() -> str:
    return uuid.uuid4().hex


def fill(farm: Farm, artifacts: int, noise: int, seed: int) -> int:
    """Insert the hot model's ``artifacts`` and ``noise`` others; returns the result rows."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    engine = farm_db.get_engine(farm.settings.database_url)
    hot = {"id": _hex(), "name": MODEL, "sha256": _hex() * 2, "size_bytes": 10**8, "uri": "file:///hot", "created_at": now}
    others = [
        {"id": _hex(), "name": f"model-{i:04d}", "sha256": _hex() * 2, "size_bytes": 10**7, "uri": f"file:///{i}", "created_at": now}
        for i in range(200)
    ]
    spec = {"id": _hex(), "sha256": _hex() * 2, "canonical_json": "{}", "created_at": now}
    with engine.begin() as connection:
        connection.execute(insert(Model), [hot, *others])
        connection.execute(insert(CompileSpecRow), [spec])
    results = 0
    total = artifacts + noise
    for start in range(0, total, CHUNK):
        jobs, arts, rows = [], [], []
        for index in range(start, min(total, start + CHUNK)):
            model = hot if index < artifacts else rng.choice(others)
            arch, device_class, backend = rng.choice(TARGETS)
            precision = rng.choice(PRECISIONS)
            created = now - timedelta(seconds=rng.randint(0, 180 * 24 * 3600))
            job_id, artifact_id = _hex(), _hex()
            jobs.append({
                "id": job_id, "model_id": model["id"], "spec_id": spec["id"], "arch": arch,
                "device_class": device_class, "queue": f"compile.{arch}" + (f".{device_class}" if device_class else ""),
                "backend": backend, "precision": precision, "state": "succeeded", "submitted_by": "alice",
                "phase_timings": {"fetch": 0.2, "lowering": 1.1, "conversion": 2.3, "build": 9.0, "validate": 1.4},
                "attempts": 1, "cache_key": _hex() * 2, "created_at": created, "finished_at": created,
                # Jobs point at no artifact here: the link is circular (artifacts.job_id), and
                # the pages timed below do not follow it.
                "artifact_id": None, "worker_name": "box",
            })
            gate = "rejected" if rng.random() < 0.1 else "accepted"
            arts.append({
                "id": artifact_id, "job_id": job_id, "model_id": model["id"], "spec_id": spec["id"],
                "backend": backend, "backend_version": "1.0", "arch": arch, "device_class": device_class,
                "precision": precision, "uri": f"file:///e/{artifact_id}", "sha256": _hex() * 2,
                "size_bytes": rng.randint(10**6, 10**9), "gate": gate, "build_key": _hex() * 2,
                "partition_stats": {"num_engines": 1, "num_accelerated_nodes": 100, "num_fallback_nodes": 2,
                                    "fallback_ops": {"aten.sort.default": 2}},
                "created_at": created,
            })
            eager = rng.uniform(5, 50)
            compiled = eager / rng.uniform(1, 8)
            figures = [
                ("output_0", "cosine_similarity", 0.9999, 0.999), ("output_0", "snr_db", 45.0, 30.0),
                ("output_0", "max_abs_error", 1e-5, 1e-3),
                (PERFORMANCE_OUTPUT, "compiled_p50_ms", compiled, None), (PERFORMANCE_OUTPUT, "eager_p50_ms", eager, None),
                (PERFORMANCE_OUTPUT, "speedup", eager / compiled, None), (PERFORMANCE_OUTPUT, "peak_rss_mb", 500.0, None),
            ]
            for output, metric, value, threshold in figures:
                rows.append({
                    "id": _hex(), "artifact_id": artifact_id, "job_id": job_id, "output_name": output,
                    "metric": metric, "value": value, "threshold": threshold, "passed": True, "seed": 0,
                    "created_at": created,
                })
        with engine.begin() as connection:
            connection.execute(insert(Job), jobs)
            connection.execute(insert(Artifact), arts)
            connection.execute(insert(ValidationResult), rows)
        results += len(rows)
    # Planner statistics and (PostgreSQL) the visibility map that index-only scans need, as
    # autovacuum or `PRAGMA optimize` keep them on a farm that has been running a while.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
    return results


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, float]:
    call()  # warm: connection pool, statement cache, templates
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, math.ceil(len(samples) * 0.95) - 1)]


def run(settings: Settings, artifacts: int, noise: int, repeat: int, seed: int) -> dict[str, Any]:
    import httpx

    farm_db.upgrade(settings.database_url)
    farm = Farm(settings)
    started = time.perf_counter()
    results = fill(farm, artifacts, noise, seed)
    dialect = farm_db.get_engine(settings.database_url).dialect.name
    print(f"{dialect}: {artifacts} artifacts of {MODEL} (+{noise} of 200 other models, {results} results), "
          f"filled in {time.perf_counter() - started:.1f} s")
    secret = tokens.create_token(farm, "bench", "read").secret
    last_page = max(1, math.ceil(artifacts / PAGE_ROWS))
    report: dict[str, Any] = {"database": dialect, "artifacts": artifacts, "noise": noise, "rows": {}}
    with ServerThread(create_app(farm)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        client.cookies.set(COOKIE, secret, domain="127.0.0.1", path="/dashboard")
        headers = {"Authorization": f"Bearer {secret}"}

        def get(path: str, **kwargs: Any) -> Callable[[], Any]:
            def call() -> None:
                response = client.get(path, **kwargs)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
            return call

        page = client.get(f"/dashboard/models/{MODEL}")
        assert page.status_code == 200 and page.text.count('class="bar bar-speedup"') == 24, "the page shows every group"
        cases = [
            ("model_comparison (in-process)", lambda: model_comparison(farm, MODEL, limit=PAGE_ROWS)),
            ("GET /dashboard/models/NAME", get(f"/dashboard/models/{MODEL}")),
            (f"GET /dashboard/models/NAME?page={last_page}", get(f"/dashboard/models/{MODEL}?page={last_page}")),
            ("GET /api/v1/compare/NAME", get(f"/api/v1/compare/{MODEL}", headers=headers)),
            ("GET /dashboard/jobs", get("/dashboard/jobs")),
            ("GET /dashboard/jobs?model=NAME", get(f"/dashboard/jobs?model={MODEL}")),
        ]
        print(f"{'request':<44} {'median ms':>10} {'p95 ms':>8}")
        for label, call in cases:
            median, p95 = timed(call, repeat)
            report["rows"][label] = {"median_ms": round(median, 2), "p95_ms": round(p95, 2)}
            print(f"{label:<44} {median:>10.2f} {p95:>8.2f}")
        report["page_bytes"] = len(page.content)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=10_000)
    parser.add_argument("--noise", type=int, default=20_000, help="artifacts of other models")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES, metavar="URL",
                        help=f"run on PostgreSQL (default URL {DEFAULT_POSTGRES}) in a throwaway schema")
    args = parser.parse_args(argv)
    reports = []
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as folder:
        home = Path(folder)
        settings = Settings.embedded(home, api_rate_limit=0)
        reports.append(run(settings, args.artifacts, args.noise, args.repeat, args.seed))
        if args.postgres:
            print()
            with scratch_postgres_schema(args.postgres, prefix="bench_") as url:
                pg = Settings.embedded(home / "pg", database_url=url, api_rate_limit=0)
                reports.append(run(pg, args.artifacts, args.noise, args.repeat, args.seed))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "dashboard.json").write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
