"""Progress of a long job in its log: counts, rate and time left, in lines readable in a redirected log file.

``Progress(log, "estimate nre_c2f", total=825)`` then ``step(failed=...)`` per item logs one line for the first
item (an early rate), then at most one every ``interval`` seconds, and always one for the last item::

    estimate nre_c2f: 120/825 pairs (3 failed), 0.42 pairs/s, 4m40s elapsed, ETA 28m00s

``done(extra)`` logs the job's one-line summary and returns it. Items skipped before the loop (resumed, reused)
count as done but not in the rate."""

from __future__ import annotations

import logging
import re
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


# ---- reading the lines back (nre status): the formats above, `nre synth`'s per-scene lines and counts of other jobs
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_LINE = re.compile(
    r"^(?P<label>.*?): (?P<n>\d+)/(?P<total>\d+) (?P<unit>\S+)(?: \((?P<counts>[^()]*)\))?, \S+ (?P=unit)/s, "
    r"(?P<elapsed>\w+) elapsed(?:, ETA (?P<eta>\w+))?$"
)
_DONE = re.compile(
    r"^(?P<label>.*?): (?P<n>\d+) (?P<unit>[A-Za-z]\S*)(?: \((?P<counts>[^()]*)\))? in (?P<elapsed>\d\w*)(?:$|,| ->)"
)
_SCENE = re.compile(r"^\[(?P<n>\d+)/(?P<total>\d+)\] (?P<unit>\w+) .*?(?:, ETA (?P<eta>\w+))?$")  # nre synth
_COUNT = re.compile(r"(?:(?P<before>[A-Za-z]+) )?(?P<n>\d+)/(?P<total>\d+)(?: (?P<after>[A-Za-z]+)\b)?")


def parse_duration(text: str) -> float | None:
    """Seconds of a ``duration`` text (``4m40s`` -> 280), None when it is not one."""
    m = _DURATION.fullmatch(text or "")
    if not text or not m:
        return None
    h, mi, s = (int(g or 0) for g in m.groups())
    return float(3600 * h + 60 * mi + s)


def _tallies(text: str | None) -> dict[str, int]:
    out = {}
    for part in (text or "").split(", "):
        n, _, name = part.partition(" ")
        if n.isdigit() and name:
            out[name] = int(n)
    return out


def parse_progress(message: str) -> dict | None:
    """What a progress line of a job's log says: ``n``, ``total`` (None on a summary line), ``unit``, ``counts``
    (the tallies, e.g. {'failed': 3}), ``eta`` (seconds; None when not given) and ``final`` (the job's summary).
    Reads ``Progress.line`` / ``Progress.done`` lines and ``nre synth``'s ``[3/12] scene ...`` lines; None for any
    other line (``parse_count`` reads the plain counts of other jobs)."""
    m = _LINE.match(message)
    if m:
        total, n = int(m["total"]), int(m["n"])
        eta = parse_duration(m["eta"]) if m["eta"] else (0.0 if n >= total else None)
        return dict(n=n, total=total, unit=m["unit"], counts=_tallies(m["counts"]), eta=eta, final=False)
    m = _DONE.match(message)
    if m:
        return dict(n=int(m["n"]), total=None, unit=m["unit"], counts=_tallies(m["counts"]), eta=0.0, final=True)
    m = _SCENE.match(message)
    if m:
        n, total = int(m["n"]), int(m["total"])
        eta = parse_duration(m["eta"]) if m["eta"] else (0.0 if n >= total else None)
        return dict(n=n, total=total, unit=m["unit"] + "s", counts={}, eta=eta, final=False)
    return None


def parse_count(message: str) -> dict | None:
    """The last ``[word] N/M [word]`` count of a line (``features 3/10``, ``5/10 images registered``: the calibrated
    and SfM scene jobs), as ``parse_progress`` gives it without an ETA; a ``chunk K/N`` is not a count."""
    found = [m for m in _COUNT.finditer(message) if m["before"] != "chunk"]
    if not found:
        return None
    m = found[-1]
    unit = m["before"] or m["after"] or ""
    return dict(n=int(m["n"]), total=int(m["total"]), unit=unit, counts={}, eta=None, final=False)
