"""Alert hysteresis: open after min_points hot points, close after cooldown_points cool ones, one open."""

from __future__ import annotations

from stream.alerts import AlertPolicy, AlertState, update


def run(scores: list[float], policy: AlertPolicy) -> list[tuple[str, int, int, float, int | None]]:
    st, out = AlertState(), []
    for ts, s in enumerate(scores):
        ev = update(st, policy, ts, s)
        if ev:
            out.append((ev.state, ev.opened_ts, ev.peak_ts, ev.peak_score, ev.closed_ts))
    return out


def test_open_then_close_with_peak() -> None:
    p = AlertPolicy(threshold=0.5, min_points=1, cooldown_points=2, close_ratio=0.8)
    events = run([0.1, 0.6, 0.9, 0.45, 0.3, 0.2, 0.1], p)
    assert events == [("open", 1, 1, 0.6, None), ("closed", 1, 2, 0.9, 5)]


def test_min_points_needs_a_run_and_opened_ts_is_its_start() -> None:
    p = AlertPolicy(threshold=0.5, min_points=3, cooldown_points=1)
    assert run([0.6, 0.7, 0.1, 0.6, 0.8, 0.7, 0.1], p) == [
        ("open", 3, 4, 0.8, None),
        ("closed", 3, 4, 0.8, 6),
    ]


def test_scores_between_close_and_open_threshold_keep_it_open() -> None:
    p = AlertPolicy(threshold=0.5, min_points=1, cooldown_points=2, close_ratio=0.8)
    # 0.45 is below the threshold but above 0.4 (the close threshold): the cooldown restarts
    events = run([0.9, 0.3, 0.45, 0.3, 0.45, 0.3, 0.3, 0.9], p)
    assert [e[0] for e in events] == ["open", "closed", "open"]
    assert events[1][4] == 6 and events[2][1] == 7


def test_one_open_alert_at_a_time() -> None:
    p = AlertPolicy(threshold=0.5, min_points=1, cooldown_points=3)
    assert [e[0] for e in run([0.9] * 10, p)] == ["open"]
