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


def test_progress_lines_read_back(caplog, monkeypatch):
    """nre status reads the lines Progress writes: counts, tallies, ETA; the summary line marks the job's end."""
    import nre.progress
    from nre.progress import parse_count, parse_duration, parse_progress

    now = [0.0]
    monkeypatch.setattr(nre.progress.time, "perf_counter", lambda: now[0])
    log = logging.getLogger("test.progress.read")
    with caplog.at_level(logging.INFO, logger="test.progress.read"):
        p = Progress(log, "estimate nre_c2f chunk 0/4", total=825, interval=0)
        now[0] += 4
        p.step(failed=1)
        now[0] += 276
        p.step(119)
        p.done("-> rows/chunk0.parquet")
    first, second, summary = (parse_progress(r.getMessage()) for r in caplog.records)
    assert first == dict(n=1, total=825, unit="pairs", counts={"failed": 1}, eta=3296.0, final=False)
    assert second["n"] == 120 and second["eta"] == parse_duration("27m25s") == 1645 and not second["final"]
    assert summary == dict(n=120, total=None, unit="pairs", counts={"failed": 1}, eta=0.0, final=True)
    # nre synth's per-scene lines; the last one has no ETA
    line = "[3/12] scene test_02: 30 images, 900 points, SfM noise median 0.010 deg / 0.001 units (41.2 s), ETA 6m10s"
    assert parse_progress(line) == dict(n=3, total=12, unit="scenes", counts={}, eta=370.0, final=False)
    assert parse_progress("[12/12] scene test_11: 30 images, 900 points (40.0 s)")["eta"] == 0.0
    # other lines are no progress line; plain counts of the scene jobs, never a chunk K/N
    assert parse_progress("maps dsift chunk 0/2: feature memo: 6/16 level look-ups served from memory") is None
    assert parse_count("scene fountain: features 3/11 0003.png (1.2 s)")["n"] == 3
    assert parse_count("sfm south: 5/10 images registered") == dict(
        n=5, total=10, unit="images", counts={}, eta=None, final=False
    )
    assert parse_count("nre_c2f: 1 settings x 4 pairs (chunk 0/2, 0 resumed)") is None
    assert [parse_duration(t) for t in ("42s", "4m40s", "2h05m", "soon", "")] == [42, 280, 7500, None, None]
