"""Worker log lines: the job id on every line of a job, as text or JSON."""

import io
import json
import logging

import pytest

from orchestrator import logs
from orchestrator.celery_app import COMPILE_TASK
from orchestrator.settings import SettingsError, load_settings

JOB = "0123456789abcdef0123456789abcdef"


def _logger(fmt):
    stream = io.StringIO()
    logger = logging.getLogger(f"test-logs-{fmt}")
    logger.handlers = [logging.StreamHandler(stream)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logs.apply(logger, fmt)
    return logger, stream


def test_text_lines_of_a_job_start_with_its_id():
    logger, stream = _logger("text")
    logger.info("outside")
    token = logs.current_job.set(JOB)
    try:
        logger.info("compiling %s", "tiny")
    finally:
        logs.current_job.reset(token)
    outside, inside = stream.getvalue().splitlines()
    assert "[job" not in outside
    assert inside.endswith(f"[job {JOB}] compiling tiny")


def test_json_lines_carry_the_job_id_and_the_formatted_message():
    logger, stream = _logger("json")
    token = logs.current_job.set(JOB)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("failed %d", 3)
    finally:
        logs.current_job.reset(token)
    line = json.loads(stream.getvalue())
    assert line["job_id"] == JOB and line["message"] == "failed 3" and line["level"] == "ERROR"
    assert "RuntimeError: boom" in line["exc_info"]


def test_celerys_received_line_names_the_job_from_the_message_arguments():
    logger, stream = _logger("json")
    data = {"id": "task-1", "name": COMPILE_TASK, "args": f"['{JOB}']"}
    logger.info("Task %(name)s[%(id)s] received", data, extra={"data": data})
    assert json.loads(stream.getvalue())["job_id"] == JOB


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown log format"):
        logs.formatter_for("xml")


def test_metrics_port_and_log_format_are_settings(tmp_path):
    env = {"ORCHESTRATE_HOME": str(tmp_path), "ORCHESTRATE_METRICS_PORT": "9464",
           "ORCHESTRATE_LOG_FORMAT": "json"}
    settings = load_settings(env)
    assert (settings.metrics_port, settings.log_format) == (9464, "json")
    assert load_settings({"ORCHESTRATE_HOME": str(tmp_path)}).metrics_port is None
    with pytest.raises(SettingsError, match="log_format"):
        load_settings({**env, "ORCHESTRATE_LOG_FORMAT": "xml"})
    with pytest.raises(SettingsError, match="metrics_port"):
        load_settings({**env, "ORCHESTRATE_METRICS_PORT": "99999"})
