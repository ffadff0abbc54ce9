"""Progress lines of long jobs (nre.progress): counts, rate, ETA; first, last and at most one per interval."""

import logging

from nre.progress import Progress, duration


def test_duration():
    assert [duration(s) for s in (0, 42.4, 280, 7500)] == ["0s", "42s", "4m40s", "2h05m"]


def test_progress_lines(caplog, monkeypatch):
    import nre.progress

    now = [100.0]
    monkeypatch.setattr(nre.progress.time, "perf_counter", lambda: now[0])
    log = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        p = Progress(log, "job", total=10, done=2, interval=30)
        for i in range(8):
            now[0] += 10
            p.step(failed=int(i == 3))
        summary = p.done("-> out")
    lines = [r.getMessage() for r in caplog.records]
    # the first item (an early rate), every 30 s, the last one; resumed items count as done but not in the rate
    assert lines[0] == "job: 3/10 pairs, 0.1 pairs/s, 10s elapsed, ETA 1m10s"
    assert lines[1] == "job: 6/10 pairs (1 failed), 0.1 pairs/s, 40s elapsed, ETA 40s"
    assert lines[-2] == "job: 10/10 pairs (1 failed), 0.1 pairs/s, 1m20s elapsed"
    assert len(lines) == 5 and summary == lines[-1] == "job: 10 pairs (1 failed) in 1m20s -> out"
