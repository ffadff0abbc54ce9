"""A killable worker process for calls that may hang or crash the interpreter (``nre estimate``'s pairs).

``Worker(fn)`` forks one long-lived process that runs ``fn(task, started)`` for task after task, sequentially; the
parent sends a task, the child calls ``started()`` when the guarded part begins (for ``nre estimate``: the
estimator's call) and sends back ``fn``'s value. ``call(task, timeout_s)`` returns

- ``("done", value)``;
- ``("timeout", seconds)`` when the guarded part ran longer than ``timeout_s``: the child is killed (SIGKILL, which
  also stops a hang inside C code, where a Python signal would not be handled);
- ``("died", reason)`` when the child died (``os._exit``, a segfault, the OOM killer): reason ``worker died: exit
  code 3`` or ``worker died: exit code -11 (SIGSEGV)``.

After a time-out or a death the next call forks a fresh child, so one bad task costs one fork and the
state the child had built (e.g. a feature memo, modules it imported lazily); the common case costs two pipe
messages per task. The fork start method keeps what the parent loaded (imports, scene index, the estimator), so the
parent must set everything up and compute nothing itself: forking a process that has run multi-threaded OpenMP work
(torch with more than one thread) leaves the child's OpenMP pool dead, and the child hangs at its first parallel
region unless it uses a single thread. The child dies with its parent (Linux ``PR_SET_PDEATHSIG``) and ignores
SIGINT (the parent handles Ctrl-C and kills it). Where fork is unavailable (not Linux / macOS), ``available()`` is
False and callers run tasks in-process.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any


def available() -> bool:
    return "fork" in mp.get_all_start_methods()


def describe_exit(code: int | None) -> str:
    """``worker died: exit code N`` (with the signal's name for a negative code)."""
    if code is not None and code < 0:
        try:
            return f"worker died: exit code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"worker died: exit code {code}"


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the parent's kill on exit (daemon process) remains
        pass


def _serve(fn, init, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if init is not None:
        init()

    def started():
        conn.send(("start", None))

    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            conn.send(("stopped", None))
            return
        try:
            value = fn(task, started)
        except BaseException as e:  # fn should record its own failures; anything else is reported, not fatal
            conn.send(("error", f"{type(e).__name__}: {e}"))
            continue
        conn.send(("done", value))


class Worker:
    """One forked worker process running ``fn(task, started)`` per task (see the module docstring). ``init`` runs
    once in every new child before its first task (e.g. thread settings)."""

    def __init__(self, fn: Callable[[Any, Callable[[], None]], Any], init: Callable[[], None] | None = None):
        if not available():
            raise RuntimeError("the fork start method is not available on this platform")
        self.fn, self.init = fn, init
        self.proc = None
        self.conn = None
        self.starts = 0  # forks so far (1 + restarts after time-outs and deaths)

    def _start(self) -> None:
        ctx = mp.get_context("fork")
        parent, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_serve, args=(self.fn, self.init, child), daemon=True, name="nre-worker")
        self.proc.start()
        child.close()
        self.conn = parent
        self.starts += 1

    def _reap(self, kill: bool) -> int | None:
        if self.proc is None:
            return None
        if kill and self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        code = self.proc.exitcode
        self.conn.close()
        self.proc, self.conn = None, None
        return code

    def call(self, task, timeout_s: float | None = None) -> tuple[str, Any]:
        """Run one task: ``("done", value)``, ``("timeout", seconds)``, ``("died", reason)`` or ``("error", reason)``
        (an exception that escaped ``fn``; the child carries on)."""
        if self.proc is None:
            self._start()
        try:
            self.conn.send(task)
        except (BrokenPipeError, OSError):
            return "died", describe_exit(self._reap(kill=True))
        deadline = None
        t_start = None
        while True:
            left = None if deadline is None else max(0.0, deadline - time.perf_counter())
            ready = wait([self.conn, self.proc.sentinel], left)
            if not ready:  # the guarded part overran its time: kill, whatever it is doing
                self._reap(kill=True)
                return "timeout", time.perf_counter() - t_start
            if self.conn in ready or self.conn.poll():
                try:
                    kind, value = self.conn.recv()
                except (EOFError, OSError):
                    return "died", describe_exit(self._reap(kill=True))
                if kind == "start":
                    t_start = time.perf_counter()
                    deadline = None if timeout_s is None else t_start + float(timeout_s)
                    continue
                return kind, value  # "done", or "error" (an exception that fn did not record itself)
            # the process ended without a message (os._exit, a signal): a grandchild may still hold the pipe open
            return "died", describe_exit(self._reap(kill=True))

    def close(self):
        """Stop the child (politely, then by force) and return its exit code."""
        if self.proc is None:
            return None
        try:
            self.conn.send(None)
            if wait([self.conn], 10):
                self.conn.recv()
        except (EOFError, OSError):
            pass
        self.proc.join(10)
        return self._reap(kill=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
