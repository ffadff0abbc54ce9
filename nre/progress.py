"""Progress of a long job in its log: counts, rate and time left, in lines readable in a redirected log file.

``Progress(log, "estimate nre_c2f", total=825)`` then ``step(failed=...)`` per item logs one line for the first
item (an early rate), then at most one every ``interval`` seconds, and always one for the last item::

    estimate nre_c2f: 120/825 pairs (3 failed), 0.42 pairs/s, 4m40s elapsed, ETA 28m00s

``done(extra)`` logs the job's one-line summary and returns it. Items skipped before the loop (resumed, reused)
count as done but not in the rate."""

from __future__ import annotations

import logging
import time


def duration(seconds: float) -> str:
    """``42s``, ``4m40s``, ``2h05m``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    def __init__(
        self,
        log: logging.Logger,
        label: str,
        total: int,
        unit: str = "pairs",
        done: int = 0,
        interval: float = 30.0,
    ):
        self.log, self.label, self.total, self.unit, self.interval = log, label, total, unit, interval
        self.done_before = self.n = done
        self.counts: dict[str, int] = {}
        self.t0 = self._last = time.perf_counter()

    def _counts(self) -> str:
        shown = [f"{v} {k}" for k, v in self.counts.items() if v]
        return f" ({', '.join(shown)})" if shown else ""

    def line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        ran = self.n - self.done_before
        rate = ran / elapsed if elapsed > 0 else 0.0
        left = self.total - self.n
        eta = f", ETA {duration(left / rate)}" if rate > 0 and left > 0 else ""
        return (
            f"{self.label}: {self.n}/{self.total} {self.unit}{self._counts()}, {rate:.3g} {self.unit}/s, "
            f"{duration(elapsed)} elapsed{eta}"
        )

    def step(self, n: int = 1, **counts: int) -> None:
        """``n`` more items done; ``counts`` are added to the named tallies (failed=1, reused=1...)."""
        self.n += n
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + int(v)
        now = time.perf_counter()
        if self.n - self.done_before == n or self.n >= self.total or now - self._last >= self.interval:
            self._last = now
            self.log.info(self.line())

    def done(self, extra: str = "") -> str:
        """The job's one-line summary (logged): items, tallies, time, and ``extra``."""
        text = f"{self.label}: {self.n} {self.unit}{self._counts()} in {duration(time.perf_counter() - self.t0)}"
        if extra:
            text += f" {extra}" if extra.startswith("->") else f", {extra}"
        self.log.info(text)
        return text
