"""Worker logs people and log collectors can both read: every line of a job carries its job id.

``install(fmt)`` hooks Celery's logging set-up (``after_setup_logger`` and
``after_setup_task_logger``, sent in the worker and again in each forked pool process) so that
every handler it configures gets

* a filter that stamps each record with ``job_id`` (the job the current task is building, from a
  context variable that the ``task_prerun``/``task_postrun`` signals set and clear, so it works
  for prefork, solo and thread pools alike), and
* a formatter: Celery's usual text line with ``[job <id>]`` in front of the message, or one JSON
  object per line (``ts``, ``level``, ``logger``, ``process``, ``job_id``, ``message``,
  ``exc_info``) for a log collector (``--log-format json`` or ``ORCHESTRATE_LOG_FORMAT=json``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import datetime, timezone
from typing import Any

from orchestrator.celery_app import COMPILE_TASK

LOG_FORMATS = ("text", "json")

#: Celery's worker line format, with the job in front of the message.
TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(job_prefix)s%(message)s"

current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "orchestrate_job_id", default=None
)


_JOB_ID = re.compile(r"\b[0-9a-f]{32}\b")


def _received_job(record: logging.LogRecord) -> str | None:
    """The job of Celery's "Task ... received" line, which the consumer writes before the task
    (and so the job context) starts: Celery passes the message's arguments as ``record.data``."""
    data = getattr(record, "data", None)
    if not isinstance(data, dict) or data.get("name") != COMPILE_TASK:
        return None
    match = _JOB_ID.search(str(data.get("args") or ""))
    return match.group(0) if match else None


class JobIdFilter(logging.Filter):
    """Adds ``record.job_id`` (None outside a job) and ``record.job_prefix`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = getattr(record, "job_id", None) or current_job.get() or _received_job(record)
        record.job_id = job_id
        record.job_prefix = f"[job {job_id}] " if job_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the message is formatted first, so arguments never leak raw."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "job_id": getattr(record, "job_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def formatter_for(fmt: str) -> logging.Formatter:
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def apply(logger: logging.Logger, fmt: str) -> None:
    """Give every handler of ``logger`` the job-id filter and the formatter of ``fmt``."""
    formatter = formatter_for(fmt)
    for handler in logger.handlers:
        if not any(isinstance(f, JobIdFilter) for f in handler.filters):
            handler.addFilter(JobIdFilter())
        handler.setFormatter(formatter)


_installed: dict[str, Any] = {}


def install(fmt: str = "text") -> None:
    """Hook Celery's logging and task signals (idempotent; the last format wins)."""
    from celery import signals

    formatter_for(fmt)  # refuse an unknown format before the worker starts
    _installed["format"] = fmt
    if _installed.get("connected"):
        return

    def on_setup(logger: logging.Logger | None = None, **_: Any) -> None:
        if logger is not None:
            apply(logger, _installed["format"])

    def on_prerun(task_id: str | None = None, args: Any = None, **_: Any) -> None:
        # The compile task's one argument is its job id; other tasks log under their task id.
        job_id = args[0] if args and isinstance(args[0], str) else task_id
        current_job.set(job_id)

    def on_postrun(**_: Any) -> None:
        current_job.set(None)

    signals.after_setup_logger.connect(on_setup, weak=False)
    signals.after_setup_task_logger.connect(on_setup, weak=False)
    signals.task_prerun.connect(on_prerun, weak=False)
    signals.task_postrun.connect(on_postrun, weak=False)
    _installed["connected"] = True
