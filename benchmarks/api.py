"""Status requests through the API server vs direct mode, and from 50 concurrent clients.

    python benchmarks/api.py [--clients 50] [--seconds 10] [--sequential 500]

One ``orchestrate serve`` process (embedded farm: SQLite, SQLite broker, local store) holds one
queued job. Measured, all on this machine:

* direct: ``services.get_job`` in-process (what ``orchestrate status`` costs without a server);
* sequential: one keep-alive client, one ``GET /api/v1/jobs/{id}`` at a time: the API's own
  latency (auth lookup + the same service call + HTTP + JSON);
* concurrent: ``--clients`` keep-alive connections, each sending its next request as soon as
  the last one answered, for ``--seconds``: requests/s and latency under load;
* submit: ``--submits`` submissions of the one-op model (each a new job on the SQL broker),
  ``services.submit`` in-process vs a multipart upload to ``POST /api/v1/jobs`` (httpx).

The load generator is a minimal HTTP/1.1 client on asyncio streams in this process, so that it
takes as little of the two cores from the server as it can; it still shares them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator import services, tokens  # noqa: E402
from orchestrator.routing import Target  # noqa: E402
from orchestrator.samples import tiny_program  # noqa: E402
from orchestrator.server.testing import free_port  # noqa: E402
from orchestrator.services import Farm  # noqa: E402
from orchestrator.testing import cli_command, embedded_settings, settings_env  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Connection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads whole responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
        self.reader, self.writer, self.request = reader, writer, request

    @classmethod
    async def open(cls, port: int, path: str, token: str) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
        return cls(reader, writer, request)

    async def get(self) -> int:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def sequential(port: int, path: str, token: str, count: int) -> list[float]:
    conn = await Connection.open(port, path, token)
    for _ in range(20):
        assert await conn.get() == 200
    times = []
    for _ in range(count):
        start = time.perf_counter()
        assert await conn.get() == 200
        times.append(time.perf_counter() - start)
    conn.close()
    return times


async def concurrent(port: int, path: str, token: str, clients: int, seconds: float) -> tuple[list[float], int, float]:
    conns = [await Connection.open(port, path, token) for _ in range(clients)]
    for conn in conns:
        assert await conn.get() == 200
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def run(conn: Connection) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            start = time.perf_counter()
            status = await conn.get()
            latencies.append(time.perf_counter() - start)
            errors += status != 200

    began = time.perf_counter()
    await asyncio.gather(*(run(conn) for conn in conns))
    elapsed = time.perf_counter() - began
    for conn in conns:
        conn.close()
    return latencies, errors, elapsed


def submit_over_http(port: int, token: str, model: Path, count: int) -> list[float]:
    import httpx

    times = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers, timeout=120) as client:
        for i in range(count):
            # Specs unlike the direct ones: every submission is a new job, never the same row.
            fields = {"arch": "x86_64", "spec": json.dumps({"validation": {"samples": 1000 + i}})}
            start = time.perf_counter()
            with model.open("rb") as stream:
                response = client.post("/jobs", files={"model": (model.name, stream)}, data=fields)
            times.append(time.perf_counter() - start)
            assert response.status_code == 201, response.text
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--submits", type=int, default=20)
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        settings = embedded_settings(home / "farm", api_rate_limit=0)
        farm = Farm(settings)
        model = home / "tiny.pt2"
        torch.export.save(tiny_program(), model)
        (job,) = services.submit(farm, model, [Target.parse("x86_64")], services.resolve_spec(None)).jobs
        secret = tokens.create_token(farm, "bench", "read").secret
        submitter = tokens.create_token(farm, "bench", "submit").secret
        target = [Target.parse("x86_64")]

        direct_submit = []
        for i in range(args.submits):
            spec = services.resolve_spec({"validation": {"samples": 1 + i}})
            start = time.perf_counter()
            services.submit(farm, model, target, spec)
            direct_submit.append(time.perf_counter() - start)

        direct = []
        for _ in range(args.sequential):
            start = time.perf_counter()
            services.get_job(farm, job.id)
            direct.append(time.perf_counter() - start)

        port = free_port()
        env = settings_env(settings, os.environ)
        env["ORCHESTRATE_API_RATE_LIMIT"] = "0"
        server = subprocess.Popen(
            cli_command("serve", "--port", str(port), "--log-level", "warning"), env=env
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    asyncio.run(sequential(port, "/healthz", secret, 1))
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.2)
            path = f"/api/v1/jobs/{job.id}"
            seq = asyncio.run(sequential(port, path, secret, args.sequential))
            lat, errors, elapsed = asyncio.run(concurrent(port, path, secret, args.clients, args.seconds))
            api_submit = submit_over_http(port, submitter, model, args.submits)
        finally:
            server.terminate()
            server.wait(30)

    ms = 1000.0
    report = {
        "direct_status_p50_ms": statistics.median(direct) * ms,
        "api_status_p50_ms": statistics.median(seq) * ms,
        "api_status_p99_ms": percentile(seq, 0.99) * ms,
        "clients": args.clients,
        "concurrent_requests": len(lat),
        "concurrent_errors": errors,
        "concurrent_requests_per_s": len(lat) / elapsed,
        "concurrent_p50_ms": statistics.median(lat) * ms,
        "concurrent_p99_ms": percentile(lat, 0.99) * ms,
        "direct_submit_p50_ms": statistics.median(direct_submit) * ms,
        "api_submit_p50_ms": statistics.median(api_submit) * ms,
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}, indent=2))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "api.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
