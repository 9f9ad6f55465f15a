"""When a stopping gRPC server may close (common.drain): pure, with a fake clock."""

from common.drain import CHECKS_TO_MARK_DOWN, GONE_AFTER_S, DrainTracker


def test_nobody_watching_means_nothing_to_wait_for() -> None:
    tracker = DrainTracker()
    tracker.begin()
    assert tracker.done(now=0.0)


def test_one_off_probes_are_not_watchers() -> None:
    tracker = DrainTracker()
    tracker.checked("ipv4:127.0.0.1:5001", True, 0.0)
    tracker.checked("ipv4:127.0.0.1:5002", True, 1.0)
    tracker.begin()
    assert tracker.watchers(1.5) == [] and tracker.done(1.5)


def test_waits_until_the_load_balancer_was_told_down_enough_times() -> None:
    tracker = DrainTracker()
    envoy = "ipv4:127.0.0.1:40000"
    for t in (0.0, 1.0, 2.0):
        tracker.checked(envoy, True, t)
    tracker.begin()
    assert not tracker.done(2.1)
    for i in range(CHECKS_TO_MARK_DOWN):
        assert not tracker.done(2.5 + i)
        tracker.checked(envoy, False, 3.0 + i)
    assert tracker.done(3.0 + CHECKS_TO_MARK_DOWN)


def test_serving_answers_during_the_drain_do_not_count() -> None:
    tracker = DrainTracker()
    envoy = "ipv4:127.0.0.1:40000"
    tracker.checked(envoy, True, 0.0)
    tracker.checked(envoy, True, 1.0)
    tracker.begin()
    for t in (2.0, 3.0, 4.0):
        tracker.checked(envoy, True, t)
    assert not tracker.done(4.1)


def test_every_watcher_must_be_told_and_one_that_stopped_checking_is_not_waited_for() -> None:
    tracker = DrainTracker()
    for peer in ("a", "b"):
        tracker.checked(peer, True, 0.0)
        tracker.checked(peer, True, 1.0)
    tracker.begin()
    for t in (2.0, 2.9):
        tracker.checked("a", False, t)
    assert not tracker.done(2.95)  # b has not been told yet and checked 1.95 s ago
    assert tracker.done(1.0 + GONE_AFTER_S + 0.1)  # b went silent: its Envoy stopped too
