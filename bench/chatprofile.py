"""`plaza` under cProfile, switched on and off by signals: `chatprofile.py OUT serve ...`.

SIGUSR1 starts profiling the main thread (where the event loop runs every handler), SIGUSR2 stops it
and writes the statistics gathered so far to OUT, so only the measured window is profiled and not
the connecting. Threads are not profiled: on SQLite, aiosqlite runs each statement in its own
thread; chat.py reports that thread's CPU time from /proc instead.
"""

from __future__ import annotations

import cProfile
import signal
import sys
from types import FrameType

from plaza.cli import main

# cProfile's default wall-clock timer: time.thread_time (CPU time) costs a system call per event
# here and slowed the server several times over. Profile below saturation, on a quiet machine, so
# that wall time is CPU time (a wait for the GIL or for a core lands on the running function).
profiler = cProfile.Profile()
OUT = sys.argv.pop(1)


def _start(signum: int, frame: FrameType | None) -> None:
    profiler.enable()


def _stop(signum: int, frame: FrameType | None) -> None:
    profiler.disable()
    profiler.dump_stats(OUT)


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    sys.argv[0] = "plaza"
    main()
