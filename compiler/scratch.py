"""Scratch folders that a killed process does not leave behind for good.

A compile writes hundreds of megabytes into temporary folders (the model, ONNX files, the
engine, AOTInductor packages). ``tempfile.TemporaryDirectory`` removes them when the code
finishes, but not when the process is killed (SIGKILL, the OOM killer, a hard time limit): then
they stay in ``/tmp`` until the machine reboots, and a build machine that loses a worker now and
then fills its disk. So every scratch folder of ours is

* **locked while in use**: its creator holds an exclusive ``flock`` on the folder itself. The
  kernel drops the lock when the process ends, however it ends, and a lock cannot outlive its
  process or be confused by a recycled pid;
* **signed by its owner**: a ``.owner`` file names the pid, the pid's start time, the host and
  the boot, for people reading ``/tmp`` and as a second check before anything is removed.

:func:`remove_dead_scratch` (run by a worker when it starts, and by each new pool process)
removes the folders with our prefixes whose lock nobody holds and whose owner is gone: a pid that
no longer runs (or now belongs to another process) on this boot of this host, or an earlier boot
of this host. A folder of another host (a shared ``/tmp``), of a live owner or of another user is
never touched; a folder without an owner record (from before this module, or whose creator died
between creating and signing it) only once it is older than ``unowned_after`` seconds.

Written by hand: ``tempfile`` has no notion of an owner, and no maintained library sweeps
temporary folders by liveness (``tmpreaper``/``systemd-tmpfiles`` go by age alone, which would
remove the folder of a compile that simply runs long).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

#: The prefixes of the scratch folders the compiler and the farm create: only these are swept.
SCRATCH_PREFIXES = (
    "orchestrate-job-",  # a worker's job: the model, its data files, the engine
    "orchestrate-aoti-",  # AOTInductor packages being built or loaded
    "orchestrate-ort-",  # ONNX Runtime quantization's model files
    "orchestrate-data-",  # submitted data files being checked
    "orchestrate-upload-",  # the API server's received uploads
)
OWNER_FILE = ".owner"


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The pid's start time in clock ticks since boot (field 22 of /proc/PID/stat): a pid that
    was recycled for another process has another start time. None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count from its closing one
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_record() -> dict[str, object]:
    pid = os.getpid()
    return {"pid": pid, "start_time": _start_time(pid), "host": socket.gethostname(), "boot_id": _boot_id()}


@contextlib.contextmanager
def scratch_folder(prefix: str, dir: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """A new temporary folder, locked and signed by this process, removed on exit (like
    ``tempfile.TemporaryDirectory``); left behind only by a process that is killed, and then
    removed by the next :func:`remove_dead_scratch`."""
    if not prefix.startswith(SCRATCH_PREFIXES):
        raise ValueError(f"scratch folder prefix {prefix!r} is not one of {SCRATCH_PREFIXES}")
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    # O_CLOEXEC (Python's default): a program the compile runs does not inherit the lock
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # blocking: a sweeper may hold it for a moment to look at the (still unsigned) folder
        fcntl.flock(fd, fcntl.LOCK_EX)
        (path / OWNER_FILE).write_text(json.dumps(_owner_record()))
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def _owner_gone(owner: dict[str, object]) -> bool:
    if owner.get("host") != socket.gethostname():
        return False  # another machine's folder on a shared filesystem: we cannot tell
    boot = _boot_id()
    if owner.get("boot_id") != boot:
        return boot is not None  # an earlier boot's process is gone
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    running = _start_time(pid)
    return running is None or running != owner.get("start_time")


def _is_dead(path: Path, unowned_after: float, now: float) -> bool:
    try:
        owner = json.loads((path / OWNER_FILE).read_text())
    except FileNotFoundError:
        return now - path.stat().st_mtime > unowned_after
    except (OSError, ValueError):
        return False
    return isinstance(owner, dict) and _owner_gone(owner)


def remove_dead_scratch(
    root: str | os.PathLike[str] | None = None,
    *,
    prefixes: Iterable[str] = SCRATCH_PREFIXES,
    unowned_after: float = 6 * 3600.0,
) -> list[Path]:
    """Remove the scratch folders in ``root`` (default: the temporary folder) that processes
    which no longer run left behind; the paths removed. Safe to run from many processes at once:
    a folder is looked at, and removed, only while holding its lock."""
    root = Path(root if root is not None else tempfile.gettempdir())
    wanted = tuple(prefixes)
    removed: list[Path] = []
    now = time.time()
    uid = os.getuid()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(wanted):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its owner is alive and using it
            path = Path(entry.path)
            if _is_dead(path, unowned_after, now):
                shutil.rmtree(path, ignore_errors=True)
                if not path.exists():
                    removed.append(path)
        finally:
            os.close(fd)
    return removed
