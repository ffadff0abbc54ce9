"""Result rows written as a job goes, so that a crash keeps its finished pairs: the part file of ``nre estimate``.

``<out>.part`` (next to the job's parquet) is JSON lines: a header ``{"nre_part_rows": 1, "fingerprint": ...,
"spec": {...}}``, then one line per finished pair ``{"pair_id", "pair" (the pair-table row), "cache" (the content
digest of the map cache the rows were computed from, or null), "rows": [...]}``, appended and flushed pair by pair
(floats round-trip exactly through JSON, inf and NaN included). When the job ends, the rows are assembled in the
pair table's order into the parquet (``nre.estimators.rows.write``, atomic) and the part file is removed.

A rerun of a killed job resumes from its part file only if its fingerprint is identical (estimator, settings,
options, backend, point cap, seed, roots, library versions and a digest of the ``nre`` and ``baselines`` sources:
any other part file is stale and is discarded), and keeps a pair's rows only if its pair-table row is unchanged and
its map cache still has the digest the rows were computed from; a truncated last line (the crash) is dropped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path

log = logging.getLogger("nre.estimators.partrows")
PART_VERSION = 1


@functools.lru_cache(maxsize=8)
def code_digest(*extra: str) -> str:
    """sha256 of the Python sources of ``nre`` and ``baselines`` (and of the ``extra`` files): a resumed job keeps
    rows made by byte-identical code only."""
    import importlib.util

    h = hashlib.sha256()
    for name in ("nre", "baselines"):  # the plug-in folder is located, not imported
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(list(spec.submodule_search_locations)[0]).resolve()
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root.parent)).encode() + b"\0" + f.read_bytes() + b"\0")
    for f in extra:
        if f and Path(f).is_file():
            h.update(f.encode() + b"\0" + Path(f).read_bytes() + b"\0")
    return h.hexdigest()


def fingerprint(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def pair_key(row: dict) -> str:
    """A pair-table row as a canonical string (values as str: numpy scalars and NaN compare as written)."""
    return json.dumps({str(k): str(v) for k, v in dict(row).items()}, sort_keys=True)


class PartRows:
    """The part file of one job (see the module docstring)."""

    def __init__(self, path: str | Path, spec: dict):
        self.path = Path(path)
        self.spec = spec
        self.fingerprint = fingerprint(spec)
        self._f = None

    def _header(self) -> str:
        return json.dumps({"nre_part_rows": PART_VERSION, "fingerprint": self.fingerprint, "spec": self.spec},
                          sort_keys=True, default=str)  # fmt: skip

    def read(self) -> tuple[list[dict], str]:
        """The entries of an existing part file made with this fingerprint, and what was found (for the log)."""
        if not self.path.exists():
            return [], "no part file"
        entries = []
        with open(self.path, encoding="utf-8") as f:
            first = f.readline()
            try:
                head = json.loads(first)
            except json.JSONDecodeError:
                return [], "unreadable part file header: starting over"
            if head.get("nre_part_rows") != PART_VERSION or head.get("fingerprint") != self.fingerprint:
                return [], "stale part file (another estimator, setting, backend, seed or code): starting over"
            for n, line in enumerate(f, 2):
                try:
                    e = json.loads(line)
                    if not isinstance(e, dict) or not {"pair_id", "pair", "rows"} <= set(e):
                        raise ValueError("not a pair entry")
                except ValueError:  # the line being written when the job died
                    log.info("%s: line %d incomplete, dropped", self.path, n)
                    break
                entries.append(e)
        return entries, f"{len(entries)} finished pairs in the part file"

    def start(self, kept: list[dict]) -> None:
        """(Re)write the part file with the header and the ``kept`` entries, then append from there."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self._header() + "\n")
            for e in kept:
                f.write(json.dumps(e) + "\n")
        tmp.replace(self.path)
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, entry: dict) -> None:
        self._f.write(json.dumps(entry) + "\n")
        self._f.flush()  # in the OS's hands: survives a crash or kill of the job

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
