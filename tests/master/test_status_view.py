"""What the status endpoint answers (:mod:`gunicorn_prefork.master.status_view`), from
every state a slot and the master can be in, and the Prometheus text
(:mod:`gunicorn_prefork.master.status_metrics`) parsed by ``prometheus_client``."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gunicorn_prefork.master.status_metrics import render
from gunicorn_prefork.master.status_view import (
    LIVE_LIMIT,
    ServerView,
    SlotView,
    agent_reply,
    liveness,
    readiness,
)

SERVING = SlotView(number=0, booted=True, serving=True)


def _view(*slots: SlotView, **kwargs: object) -> ServerView:
    base: dict[str, object] = {"workers": len(slots), "target_workers": len(slots),
                               "places": 1000}
    base.update(kwargs)
    return ServerView(slots=slots, **base)  # type: ignore[arg-type]


def test_ready_while_one_slot_takes_connections() -> None:
    view = _view(SERVING, SlotView(number=1, booted=True, serving=True, stalled=True))
    assert readiness(view) == (True, "1 of 2 slots take connections")
    assert agent_reply(view) == "up 100%\n"


@pytest.mark.parametrize(("slot", "reason"), [
    (SlotView(number=0), "no worker has booted"),
    (SlotView(number=0, booted=True), "slot 0 has no serving worker"),
    (SlotView(number=0, booted=True, serving=True, stopped=True), "slot 0's worker is stopped"),
    (SlotView(number=0, booted=True, serving=True, stalled=True, queued=3),
     "slot 0's worker takes no connections (3 queued)"),
    (SlotView(number=0, booted=True, serving=True, draining=True), "slot 0 drains"),
    (SlotView(number=0, booted=True, serving=True, held=1000), "slot 0's worker is full"),
    (SlotView(number=0, booted=True, serving=True, held=990, queued=10),
     "slot 0's worker is full"),
])
def test_not_ready_when_no_slot_takes_connections(slot: SlotView, reason: str) -> None:
    ready, why = readiness(_view(slot))
    assert not ready
    assert reason in why
    assert "\n" not in why
    assert agent_reply(_view(slot)).startswith("down #")


def test_no_slots_yet_is_not_ready() -> None:
    assert readiness(_view()) == (False, "no worker has booted")


def test_stopping_and_halting_are_never_ready() -> None:
    assert readiness(_view(SERVING, stopping=True)) == (False, "stopping")
    assert not readiness(_view(SERVING, halting=True))[0]
    assert agent_reply(_view(SERVING, stopping=True)) == "drain\n"
    assert agent_reply(_view(SERVING, halting=True)) == "drain\n"


def test_without_a_worker_connections_limit_room_is_not_counted() -> None:
    view = _view(SlotView(number=0, booted=True, serving=True, held=10**6), places=None)
    assert readiness(view)[0]
    assert agent_reply(view) == "up 100%\n"


def test_the_agent_weight_is_the_free_room_in_workers() -> None:
    idle = [SlotView(number=n, booted=True, serving=True) for n in range(3)]
    assert agent_reply(_view(*idle)) == "up 300%\n"
    half = SlotView(number=3, booted=True, serving=True, held=500)
    assert agent_reply(_view(*idle, half)) == "up 350%\n"
    nearly_full = SlotView(number=0, booted=True, serving=True, held=999)
    assert agent_reply(_view(nearly_full)) == "up 10%\n"  # a weight of 1 of 10, not 0


def test_the_shared_socket_goes_by_booted_workers() -> None:
    assert readiness(ServerView(shared_socket=True, booted_workers=2,
                                target_workers=2)) == (True, "2 of 2 workers serving")
    assert not readiness(ServerView(shared_socket=True, target_workers=2))[0]


def test_live_while_the_loop_turns_or_the_master_stops() -> None:
    assert liveness(_view(loop_age=0.5))[0]
    assert not liveness(_view(loop_age=LIVE_LIMIT + 1))[0]
    assert liveness(_view(loop_age=LIVE_LIMIT + 1, stopping=True))[0]


FAMILIES = {
    "gunicorn_prefork_slot_queued": "gauge", "gunicorn_prefork_slot_held": "gauge",
    "gunicorn_prefork_slot_accepted": "counter", "gunicorn_prefork_slot_stalled": "gauge",
    "gunicorn_prefork_slot_serving": "gauge", "gunicorn_prefork_slot_shed": "counter",
    "gunicorn_prefork_stalls": "counter", "gunicorn_prefork_moved": "counter",
    "gunicorn_prefork_shed": "counter", "gunicorn_prefork_worker_crashes": "counter",
    "gunicorn_prefork_recycles": "counter", "gunicorn_prefork_workers": "gauge",
    "gunicorn_prefork_ready": "gauge", "gunicorn_prefork_workers_target": "gauge",
    "gunicorn_prefork_slots": "gauge", "gunicorn_prefork_stopping": "gauge",
    "gunicorn_prefork_worker_connections": "gauge", "gunicorn_prefork_info": "gauge",
    "gunicorn_prefork_handed_back": "counter",
}


def test_metrics_parse_with_prometheus_client() -> None:
    view = _view(SlotView(number=0, booted=True, serving=True, queued=2, held=5,
                          accepted=40, shed=1),
                 SlotView(number=3, booted=True, serving=True, stalled=True),
                 counters={"stalls": 4, "moved": 7, "shed": 1, "crashes": 2,
                           "recycles": 9, "handed_back": 3})
    families = {f.name: f for f in text_string_to_metric_families(render(view))}
    assert {name: family.type for name, family in families.items()} == FAMILIES
    samples = {(s.name, s.labels.get("slot")): s.value
               for family in families.values() for s in family.samples}
    assert samples[("gunicorn_prefork_slot_queued", "0")] == 2
    assert samples[("gunicorn_prefork_slot_held", "0")] == 5
    assert samples[("gunicorn_prefork_slot_accepted_total", "0")] == 40
    assert samples[("gunicorn_prefork_slot_stalled", "3")] == 1
    assert samples[("gunicorn_prefork_stalls_total", None)] == 4
    assert samples[("gunicorn_prefork_moved_total", None)] == 7
    assert samples[("gunicorn_prefork_worker_crashes_total", None)] == 2
    assert samples[("gunicorn_prefork_recycles_total", None)] == 9
    assert samples[("gunicorn_prefork_handed_back_total", None)] == 3
    assert samples[("gunicorn_prefork_ready", None)] == 1
    assert samples[("gunicorn_prefork_workers", None)] == 2
    assert len(families["gunicorn_prefork_slot_held"].samples) == 2


def test_metrics_without_slots_still_name_every_family() -> None:
    families = {f.name for f in text_string_to_metric_families(render(_view()))}
    assert families == set(FAMILIES)
