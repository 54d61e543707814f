"""Message priorities on the brokers the farm supports: Redis and the embedded SQL broker.

A job that the reaper queues again (its worker stopped heartbeating mid-compile) has waited its
turn once already; it goes ahead of everything submitted since. Both brokers keep a queue's
messages in *lanes*, one per priority step, and a consumer takes from the first lane that has a
message, so a message of a lower number is taken first:

* kombu's Redis transport does this itself (``priority_steps``: lane ``<queue>`` for priority 0,
  ``<queue>\\x06\\x165`` for 5); :func:`redis_transport_options` names the steps and separator.
* kombu's SQL transport ignores priorities (it takes the oldest row). :class:`Transport` is that
  transport with the same lanes, so the embedded broker keeps the same order. Every process of
  the farm builds its Celery app with it (``celery_app.make_app``).

On RabbitMQ a higher number goes first; the farm does not support RabbitMQ.
"""

from __future__ import annotations

from queue import Empty
from typing import Any

from kombu.transport import sqlalchemy as kombu_sql

#: a job queued again after its worker was lost: taken before every job submitted since
REQUEUED_PRIORITY = 0
#: every other message (submit, retry)
SUBMITTED_PRIORITY = 5
#: one lane per priority; a message's lane is the last step at or below its priority
PRIORITY_STEPS = (REQUEUED_PRIORITY, SUBMITTED_PRIORITY)
#: kombu Redis's own separator between a queue's name and its lane
LANE_SEP = "\x06\x16"


def lane(queue: str, priority: int) -> str:
    """The name under which a broker keeps ``queue``'s messages of ``priority`` (kombu Redis's
    ``Channel._q_for_pri``): the queue's own name for the first step."""
    step = max((s for s in PRIORITY_STEPS if s <= priority), default=PRIORITY_STEPS[0])
    return f"{queue}{LANE_SEP}{step}" if step else queue


def lanes(queue: str) -> list[str]:
    """Every lane of ``queue``, the one taken first first."""
    return [lane(queue, step) for step in PRIORITY_STEPS]


def redis_transport_options() -> dict[str, Any]:
    return {"priority_steps": list(PRIORITY_STEPS), "sep": LANE_SEP}


class Channel(kombu_sql.Channel):
    """kombu's SQL channel, with a queue's messages in one lane per priority step."""

    # kombu's own bases disagree on this signature (AbstractChannel has no **kwargs)
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        priority = self._get_message_priority(payload, reverse=False)
        return super()._put(lane(queue, priority), payload, **kwargs)

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        for name in lanes(queue):
            try:
                return super()._get(name)
            except Empty:
                continue
        raise Empty()

    def _size(self, queue: str) -> int:
        return sum(int(super(Channel, self)._size(name)) for name in lanes(queue))

    def _purge(self, queue: str) -> int:
        return sum(int(super(Channel, self)._purge(name)) for name in lanes(queue))


class Transport(kombu_sql.Transport):
    """kombu's SQL transport with priority lanes (:class:`Channel`)."""

    Channel = Channel


#: what Celery's ``broker_transport`` names for a ``sqla+...`` broker URL
SQL_TRANSPORT = f"{__name__}:Transport"
