"""An exclusive lock on a ``shelf-audit run`` home, so two runs never share one.

:func:`acquire` takes an exclusive, non-blocking ``fcntl.flock`` on ``<home>/.shelf-audit.lock`` and
writes the holder (pid, host, start time, command) into it; a second run gets :class:`HomeBusy`, naming the
home and the holder, and exits with ``EXIT_BUSY`` (:mod:`shelf_audit.exit_codes`). The kernel drops the lock when
its holder ends, however it ends, so no lock is ever stale.

See docs/scheduling.md#the-lock-on-the-home.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import os
import socket
import sys
from typing import Any

LOCK_NAME = ".shelf-audit.lock"


class HomeBusy(Exception):
    """Another process holds the lock on the home."""

    def __init__(self, home: str, lock_path: str, holder: dict[str, Any]) -> None:
        super().__init__(home, lock_path, holder)
        self.home, self.lock_path, self.holder = home, lock_path, holder

    def __str__(self) -> str:
        h = self.holder
        if not h.get("pid"):
            who = "a process that has not yet written its pid"
        else:
            who = f"pid {h['pid']} on {h.get('host', '?')}, started {h.get('started', '?')}"
            if h.get("command"):
                who += f": {h['command']}"
        return f"home {self.home} is in use by another run ({who}); lock {self.lock_path}"


@dataclasses.dataclass
class HomeLock:
    """A held lock; :meth:`release` (or leaving the ``with`` block) lets the next run in."""

    home: str
    path: str
    holder: dict[str, Any]
    _fd: int | None = dataclasses.field(default=None, repr=False)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Unlock and close; a second call does nothing."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> HomeLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    """The holder record in the lock file, or {} when it is empty or not (yet) a whole JSON line."""
    raw = os.pread(fd, 65536, 0)
    try:
        holder = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def acquire(home: str) -> HomeLock:
    """Take the exclusive lock on ``home`` (created if missing) without waiting.

    Raises:
        HomeBusy: another process holds it; the exception names the home and the holder.
        OSError: the home cannot be created or the lock file cannot be opened (e.g. permissions).
    """
    home = os.path.abspath(home)
    os.makedirs(home, exist_ok=True)
    path = os.path.join(home, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise HomeBusy(home, path, holder) from None
    except BaseException:
        os.close(fd)
        raise
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["shelf-audit", *sys.argv[1:]]),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
    return HomeLock(home=home, path=path, holder=holder, _fd=fd)
