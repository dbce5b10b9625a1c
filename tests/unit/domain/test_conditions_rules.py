"""The rules of an instance's conditions (`domain.conditions`): what each observation does to Ready,
Progressing and Degraded, when a transition time moves, and the Trove statuses derived from them."""

from __future__ import annotations

import pytest

from reddwarf.domain.conditions import (
    Observation,
    Reason,
    advance,
    created,
    derive,
    held_by_a_watcher,
    unhealthy_since,
)
from reddwarf.domain.status import Condition, ConditionType, InstanceStatus, OperatingStatus

READY, PROGRESSING, DEGRADED = ConditionType.READY, ConditionType.PROGRESSING, ConditionType.DEGRADED
ACTIVE_HEALTHY = (InstanceStatus.ACTIVE, OperatingStatus.HEALTHY)


def _after(*observations: Observation, start: tuple[Condition, ...] = ()) -> tuple[Condition, ...]:
    conditions = start
    for moment, observation in enumerate(observations, start=1):
        conditions = advance(conditions, observation, observation.value, float(moment))
    return conditions


def _by_type(conditions: tuple[Condition, ...]) -> dict[ConditionType, tuple[bool, str]]:
    return {condition.type: (condition.status, condition.reason) for condition in conditions}


ACTIVE = _after(Observation.CREATING, Observation.READY)
SERVER_DOWN = _after(Observation.SERVER_DOWN, start=ACTIVE)


# Every status the reconcilers write today, and the observation that now writes it.
@pytest.mark.parametrize(
    ("start", "observation", "expected"),
    [
        ((), Observation.CREATING, (InstanceStatus.BUILD, OperatingStatus.NONE)),  # services.create
        (created("c", 0.0), Observation.READY, ACTIVE_HEALTHY),  # create's verify
        (ACTIVE, Observation.REBOOTING, (InstanceStatus.REBOOT, OperatingStatus.NONE)),  # restart's mark
        (_after(Observation.REBOOTING, start=ACTIVE), Observation.READY, ACTIVE_HEALTHY),  # restart's ready
        (SERVER_DOWN, Observation.READY, ACTIVE_HEALTHY),  # repair's ready
        (ACTIVE, Observation.DELETING, (InstanceStatus.SHUTDOWN, OperatingStatus.SHUTDOWN)),  # delete
        (created("c", 0.0), Observation.FAILED, (InstanceStatus.ERROR, OperatingStatus.ERROR)),  # a failed create
        (_after(Observation.DELETING, start=ACTIVE), Observation.FAILED,
         (InstanceStatus.ERROR, OperatingStatus.ERROR)),  # a failed delete
        (ACTIVE, Observation.SERVER_DOWN, (InstanceStatus.SHUTDOWN, OperatingStatus.SHUTDOWN)),  # health: dead
        (ACTIVE, Observation.SERVER_SUSPENDED, (InstanceStatus.ACTIVE, OperatingStatus.ERROR)),  # SIGSTOP
        (ACTIVE, Observation.ENDPOINT_SILENT, (InstanceStatus.ACTIVE, OperatingStatus.ERROR)),
        (ACTIVE, Observation.ADMIN_LOST, (InstanceStatus.ACTIVE, OperatingStatus.ERROR)),
        (_after(Observation.ENDPOINT_SILENT, start=ACTIVE), Observation.ENDPOINT_ANSWERS, ACTIVE_HEALTHY),
        (_after(Observation.ADMIN_LOST, start=ACTIVE), Observation.ENDPOINT_ANSWERS, ACTIVE_HEALTHY),
        # A server found dead keeps its SHUTDOWN while it is suspended or silent, as the sweep wrote it before.
        (SERVER_DOWN, Observation.SERVER_SUSPENDED, (InstanceStatus.SHUTDOWN, OperatingStatus.ERROR)),
        (SERVER_DOWN, Observation.ENDPOINT_SILENT, (InstanceStatus.SHUTDOWN, OperatingStatus.ERROR)),
        # ... and is Ready again once it answers, whoever started it.
        (SERVER_DOWN, Observation.ENDPOINT_ANSWERS, ACTIVE_HEALTHY),
        # A switchover and a failover show on every member of the set until their end makes them READY.
        (ACTIVE, Observation.PROMOTING, (InstanceStatus.PROMOTE, OperatingStatus.NONE)),
        (_after(Observation.PROMOTING, start=ACTIVE), Observation.READY, ACTIVE_HEALTHY),
        (SERVER_DOWN, Observation.EJECTING, (InstanceStatus.EJECT, OperatingStatus.NONE)),
    ],
)
def test_each_observation_gives_the_status_written_before_conditions(
    start: tuple[Condition, ...], observation: Observation, expected: tuple[InstanceStatus, OperatingStatus]
) -> None:
    assert derive(advance(start, observation, "m", 100.0)) == expected


def test_every_observation_keeps_all_three_conditions_in_order() -> None:
    for observation in Observation:
        conditions = advance(ACTIVE, observation, "m", 100.0)
        assert [condition.type for condition in conditions] == [READY, PROGRESSING, DEGRADED], observation


def test_a_transition_time_moves_only_when_a_condition_flips() -> None:
    start = advance((), Observation.CREATING, "create requested", 10.0)
    assert [condition.since for condition in start] == [10.0, 10.0, 10.0]

    ready = advance(start, Observation.READY, "endpoint answers", 20.0)
    since = {condition.type: condition.since for condition in ready}
    # Ready and Progressing flipped; Degraded stayed False (its reason and message changed, not its time).
    assert since == {READY: 20.0, PROGRESSING: 20.0, DEGRADED: 10.0}
    assert _by_type(ready)[DEGRADED] == (False, Reason.ENDPOINT_ANSWERS)
    assert ready[2].message == "endpoint answers"

    silent = advance(ready, Observation.ENDPOINT_SILENT, "endpoint does not answer", 30.0)
    suspended = advance(silent, Observation.SERVER_SUSPENDED, "stopped by a signal", 40.0)
    assert _by_type(suspended)[DEGRADED] == (True, Reason.SERVER_SUSPENDED)
    assert suspended[2].since == 30.0  # still Degraded since the endpoint went silent
    assert suspended[0] == ready[0]  # Ready untouched by what the sweep saw


def test_an_observation_that_changes_nothing_returns_equal_conditions() -> None:
    answering = advance(ACTIVE, Observation.ENDPOINT_ANSWERS, "endpoint answers", 50.0)
    again = advance(answering, Observation.ENDPOINT_ANSWERS, "endpoint answers", 60.0)
    assert again == answering


def test_a_failure_records_why_on_every_condition() -> None:
    failed = advance(created("create requested", 1.0), Observation.FAILED, "initdb failed", 2.0)
    assert _by_type(failed) == {
        READY: (False, Reason.OPERATION_FAILED),
        PROGRESSING: (False, Reason.OPERATION_FAILED),
        DEGRADED: (True, Reason.OPERATION_FAILED),
    }
    assert {condition.message for condition in failed} == {"initdb failed"}


def test_a_restart_keeps_what_was_degraded_until_it_is_ready() -> None:
    lost = advance(ACTIVE, Observation.ADMIN_LOST, "admin lost", 5.0)
    rebooting = advance(lost, Observation.REBOOTING, "restart requested", 6.0)
    assert _by_type(rebooting)[DEGRADED] == (True, Reason.ADMIN_ACCESS_LOST)
    assert derive(rebooting) == (InstanceStatus.REBOOT, OperatingStatus.NONE)
    assert derive(advance(rebooting, Observation.READY, "restarted", 7.0)) == ACTIVE_HEALTHY


def test_answers_do_not_make_a_failed_instance_ready() -> None:
    failed = advance(ACTIVE, Observation.FAILED, "boom", 5.0)
    assert derive(advance(failed, Observation.ENDPOINT_ANSWERS, "endpoint answers", 6.0))[0] is InstanceStatus.ERROR


def test_derive_is_total() -> None:
    assert derive(()) == (InstanceStatus.BUILD, OperatingStatus.NONE)
    unknown = (Condition(READY, False, "SomethingNewer"),)
    assert derive(unknown) == (InstanceStatus.ERROR, OperatingStatus.UNKNOWN)
    progressing_unknown = (Condition(PROGRESSING, True, "Resizing"),)
    assert derive(progressing_unknown) == (InstanceStatus.ERROR, OperatingStatus.UNKNOWN)


def test_a_stopped_replica_is_degraded_until_the_watch_sees_it_stream_again() -> None:
    stopped = _after(Observation.REPLICA_STOPPED, start=ACTIVE)
    assert derive(stopped) == (InstanceStatus.ACTIVE, OperatingStatus.ERROR)
    assert _by_type(stopped)[DEGRADED] == (True, Reason.REPLICATION_STOPPED)
    assert held_by_a_watcher(stopped) and not held_by_a_watcher(ACTIVE)
    # A ping that answers does not clear it (the server answers; it just does not replicate) ...
    assert advance(stopped, Observation.ENDPOINT_ANSWERS, "m", 9.0) == stopped
    # ... nor does the archive shipper's all-clear; the watch's does.
    assert advance(stopped, Observation.ARCHIVE_SHIPPING, "m", 9.0) == stopped
    assert derive(_after(Observation.REPLICA_STREAMS, start=stopped)) == ACTIVE_HEALTHY
    # Streaming again changes nothing of an instance degraded for another reason.
    silent = _after(Observation.ENDPOINT_SILENT, start=ACTIVE)
    assert advance(silent, Observation.REPLICA_STREAMS, "m", 9.0) == silent


@pytest.mark.parametrize(("observations", "since"), [
    ((Observation.SERVER_DOWN,), 1.0),  # not running: no heartbeat since it was found so
    ((Observation.SERVER_SUSPENDED,), 1.0),
    ((Observation.ENDPOINT_SILENT,), 1.0),
    ((Observation.SERVER_DOWN, Observation.REBOOTING, Observation.FAILED), 1.0),  # its repair failed meanwhile
    ((Observation.ARCHIVE_STALLED,), None),  # it serves: a stalled archive is no failover
    ((Observation.REPLICA_STOPPED,), None),
    ((Observation.ADMIN_LOST,), None),  # a tenant changed the admin's login: the server still serves
    ((Observation.SERVER_DOWN, Observation.READY), None),  # it came back
])
def test_an_instance_lacks_a_heartbeat_only_while_its_server_does_not_serve(
    observations: tuple[Observation, ...], since: float | None
) -> None:
    """What an eject waits for (`Settings.eject_after` of it): Trove's "no current heartbeat"."""
    assert unhealthy_since(_after(*observations, start=ACTIVE)) == since
