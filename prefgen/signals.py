"""SIGTERM and SIGHUP end a command the way Ctrl-C does.

Only SIGINT is graceful in Python by default, but `timeout`, systemd, Kubernetes and Slurm stop a process with
SIGTERM, and a closed ssh session sends SIGHUP: by default both end the process on the spot, and whatever it
held in memory (answers paid for and not yet written) is lost. Under `graceful_signals` they raise `Stopped`, a
KeyboardInterrupt, where the program is: every `finally`, rollback and final write that Ctrl-C runs runs for
them too, and the command exits 128 + the signal's number (143, 129), as a shell reports a process the signal
ended. The label run's event loop takes the same three signals itself (`pipelines.labelling.local`) and reports
the first through `note`.

After SIGHUP the terminal is usually gone, and writing to it fails: the standard streams that are a terminal
are pointed at /dev/null, so that the final writes and the exit are not cut short by an error while printing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import threading
from collections.abc import Iterator

# The signals that end a command like Ctrl-C, besides SIGINT itself (Windows has no SIGHUP).
GRACEFUL: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

_received: list[int] = []  # the signals this command was asked to stop by, first first


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program was (see the module docstring)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def note(signum: int) -> None:
    """Record that a stop signal arrived; for SIGHUP, stop writing to a terminal that has hung up."""
    _received.append(signum)
    if signum == getattr(signal, "SIGHUP", None):
        _leave_hung_up_terminal()


def received() -> int | None:
    """The first stop signal (SIGINT, SIGTERM or SIGHUP) this command got, if any."""
    return _received[0] if _received else None


def reset() -> None:
    """Forget the signals of an earlier command (tests invoke many commands in one process)."""
    _received.clear()


def exit_code(signum: int | None) -> int:
    """128 + the signal's number, as a shell reports a process it ended: 130 for Ctrl-C when none is known."""
    return 128 + (signum or signal.SIGINT)


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum or signal.SIGINT).name


def _raise_stopped(signum: int, frame: object) -> None:
    first = received() is None
    note(signum)
    if first:  # later ones are noted only: they must not cut short the cleanup the first one started
        raise Stopped(signum)


@contextlib.contextmanager
def graceful_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise `Stopped`; the previous handlers are restored after it. Only
    the main thread may set handlers: elsewhere (a notebook's worker thread) the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in GRACEFUL}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _leave_hung_up_terminal() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            with contextlib.suppress(OSError, ValueError):
                # A character device: a terminal (one that hung up is no longer `isatty`) or /dev/null itself.
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    with contextlib.suppress(OSError, ValueError):
                        stream.flush()
                    os.dup2(devnull, fd)
    finally:
        os.close(devnull)
