"""A real worker subprocess: its Prometheus endpoint scraped over HTTP while it compiles, and its
JSON log lines, each line of the job carrying the job id."""

import json
import os
import socket
import subprocess
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.samples import tiny_program
from orchestrator.settings import load_settings
from orchestrator.testing import WorkerProcess, cli_command, with_repo_on_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _samples(text):
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# prefork compiles in a child process: its log lines must carry the job id, and the parent's
# metrics still see the job (they come from the database, not from the child's counters).
@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_metrics_endpoint_is_scraped_while_a_job_runs_and_logs_carry_the_job_id(tmp_path, pool):
    import torch

    model = tmp_path / "tiny.pt2"
    torch.export.save(tiny_program(), model)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    env.update(ORCHESTRATE_HOME=str(tmp_path / "home"), ORCHESTRATE_METRICS_PORT=str(port))
    env = with_repo_on_path(env)
    settings = load_settings(env)
    url = f"http://127.0.0.1:{port}/metrics"
    log_path = tmp_path / "worker.log"

    # Queued before the worker starts, and validated on many samples, so that the compile is
    # under way for long enough to be scraped at 20 Hz while it runs.
    (tmp_path / "spec.yaml").write_text("validation:\n  samples: 4000\n")
    submitted = subprocess.run(
        cli_command("submit", str(model), "--spec", "spec.yaml", "--json"),
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert submitted.returncode == 0, submitted.stderr
    (job,) = json.loads(submitted.stdout)["jobs"]

    with WorkerProcess(env, pool=pool, log_path=log_path, loglevel="INFO",
                       extra_args=["--log-format", "json"]) as worker:
        starting = threading.Thread(target=worker.start, args=(settings,), daemon=True)
        starting.start()
        with httpx.Client(timeout=10) as http:
            scrapes, seen_running, seen_queued = 0, False, False
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                try:
                    response = http.get(url)
                except httpx.TransportError:  # not listening yet
                    time.sleep(0.05)
                    continue
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/plain")
                samples = _samples(response.text)
                scrapes += 1
                assert samples[("orchestrate_metrics_database_up", ())] == 1
                depth = samples[("orchestrate_queue_depth", (("queue", "compile.x86_64"),))]
                seen_queued |= depth == 1
                seen_running |= samples[("orchestrate_worker_running_jobs", ())] == 1
                if samples[("orchestrate_jobs", (("state", "succeeded"),))] == 1:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the job did not finish:\n" + worker.log_text())
        starting.join(60)
        assert seen_running, f"no scrape of {scrapes} saw the job running"
        assert samples[("orchestrate_worker_jobs_finished_total", (("state", "succeeded"),))] == 1
        assert samples[("orchestrate_compile_phase_seconds_count", (("phase", "fetch"),))] == 1
        assert any(name == "orchestrate_compile_phase_seconds_count" and dict(labels)["phase"]
                   not in ("fetch", "save", "upload", "validate") for name, labels in samples)
        assert samples[("orchestrate_queue_depth", (("queue", "compile.x86_64"),))] == 0

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    of_job = [line for line in lines if line["job_id"] == job["id"]]
    assert of_job, log_path.read_text()
    assert {"ts", "level", "logger", "process", "message"} <= set(of_job[0])
    if pool == "prefork":
        assert any(line["process"] != "MainProcess" for line in of_job), of_job
    # Celery's own lines for the job's task carry its id too: received (written by the consumer
    # before the task starts) and succeeded.
    assert any("received" in line["message"] for line in of_job), of_job
    assert any("succeeded" in line["message"] for line in of_job), of_job
    assert not [line for line in lines if job["id"] in line["message"] and line["job_id"] is None]
