"""One run at a time per lab and target, as Terraform locks its state.

The lock is a file ``run.lock`` in the lab's private state directory
(``$FALKIT_STATE_DIR/live/<lab>/`` or ``.../twin/private/<lab>/``), created with ``O_EXCL`` and
holding ``{pid, host, time, command}``. A second run gets :class:`~falkit.model.errors.LockError` saying
who holds it. A lock whose holder is on this host and whose pid is dead is stale: it is taken over
(and said so). A lock from another host is never broken automatically.

With ``reentrant=True`` (JupyterLab labs only; ``falkit run`` never) the lock is re-entrant within one
process: a JupyterLab kernel that opens the lab again (the notebook
run a second time) or whose gates apply several steps shares the one lock file it holds; the file
goes when the last holder in the process releases it (or the process ends: then it is stale).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..model.errors import LockError

LOCK_NAME = "run.lock"
_HELD_HERE: dict[str, int] = {}  # lock path -> holders in this process (re-entrant use)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """``with RunLock(dir, what="falkit run ..."):`` — raises ``LockError`` if another run holds it."""

    def __init__(self, directory: str | os.PathLike, what: str = "", *, reentrant: bool = False):
        self.path = Path(directory) / LOCK_NAME
        self.reentrant = reentrant
        self.what = what or " ".join(sys.argv)
        self.held = False
        self.took_over: dict | None = None

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "command": self.what}
        for _attempt in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                held = self.holder()
                if held is None:  # being written right now, or garbage: look again
                    if self._stale_garbage():
                        continue
                    raise LockError(f"{self.path} exists but cannot be read; if no falkit run is active, remove it") from None
                key = str(self.path)
                if held.get("host") == me["host"] and held.get("pid") == me["pid"] and self.reentrant \
                        and _HELD_HERE.get(key):
                    _HELD_HERE[key] += 1  # this process holds it already (re-entrant)
                    self.held = True
                    return self
                if held.get("host") == me["host"] and not _pid_alive(int(held.get("pid", -1))):
                    self.took_over = held
                    self.path.unlink(missing_ok=True)
                    continue
                raise LockError(f"another falkit run holds the lock {self.path}: pid {held.get('pid')} on "
                                f"{held.get('host')} since {held.get('time')} ({held.get('command', '')}). "
                                "Wait for it to finish; if it is gone (another host, a crash), remove the file.") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            if self.reentrant:
                _HELD_HERE[str(self.path)] = 1
            return self
        raise LockError(f"could not take the lock {self.path}")

    def _stale_garbage(self) -> bool:
        """An unreadable lock file older than a minute is removed (a crash while writing it)."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except OSError:
            return True
        if age > 60:
            self.path.unlink(missing_ok=True)
            return True
        return False

    def release(self) -> None:
        if self.held:
            key = str(self.path)
            _HELD_HERE[key] = _HELD_HERE.get(key, 1) - 1 if self.reentrant else 0
            if _HELD_HERE[key] <= 0:
                _HELD_HERE.pop(key, None)
                held = self.holder()
                if held and held.get("pid") == os.getpid():
                    self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
