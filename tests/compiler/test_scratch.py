"""Scratch folders: removed on exit, left by a killed process, swept only when their owner is gone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from compiler.scratch import OWNER_FILE, _owner_record, remove_dead_scratch, scratch_folder
from orchestrator.testing import REPO_ROOT

HOLDER = textwrap.dedent(
    """
    import importlib.util, sys, time

    # the module alone, by its path: importing the compiler package would import torch (seconds)
    spec = importlib.util.spec_from_file_location("scratch", sys.argv[3])
    scratch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scratch)
    scratch_folder = scratch.scratch_folder

    with scratch_folder(sys.argv[2], dir=sys.argv[1]) as folder:
        (folder / "model.pt2").write_bytes(b"x" * 4096)
        print(folder, flush=True)
        time.sleep(600)
    """
)


def _holder(root: Path, prefix: str = "orchestrate-job-") -> tuple[subprocess.Popen[str], Path]:
    """A real process that holds a scratch folder in ``root`` until it is killed."""
    module = REPO_ROOT / "compiler" / "scratch.py"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), prefix, str(module)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    folder = Path(process.stdout.readline().strip())
    assert folder.is_dir(), process.poll()
    return process, folder


def _signed(root: Path, name: str, **owner: object) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / OWNER_FILE).write_text(json.dumps({**_owner_record(), **owner}))
    return folder


def test_a_scratch_folder_is_signed_while_in_use_and_removed_on_exit(tmp_path: Path) -> None:
    with scratch_folder("orchestrate-job-", dir=tmp_path) as folder:
        owner = json.loads((folder / OWNER_FILE).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        # its own process holds the lock: a sweep leaves it alone
        assert remove_dead_scratch(tmp_path) == [] and folder.is_dir()
    assert not folder.exists()
    with pytest.raises(ValueError, match="not one of"), scratch_folder("mine-", dir=tmp_path):
        pass


def test_the_folder_of_a_killed_process_is_swept_and_a_live_ones_is_kept(tmp_path: Path) -> None:
    killed, dead_folder = _holder(tmp_path)
    alive, live_folder = _holder(tmp_path, "orchestrate-aoti-")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        assert dead_folder.is_dir()  # SIGKILL ran no cleanup
        assert remove_dead_scratch(tmp_path) == [dead_folder]
        assert not dead_folder.exists()
        assert live_folder.is_dir() and (live_folder / "model.pt2").exists()
    finally:
        alive.kill()
        alive.wait(10)
    assert remove_dead_scratch(tmp_path) == [live_folder]


def test_an_unlocked_folder_is_kept_while_its_owner_runs_and_swept_once_the_pid_is_recycled(tmp_path: Path) -> None:
    # the lock is free but the record names this very process: nothing is removed
    ours = _signed(tmp_path, "orchestrate-job-ours")
    # the same pid with another start time: a recycled pid, whose first owner is gone
    recycled = _signed(tmp_path, "orchestrate-job-recycled", start_time="1")
    earlier_boot = _signed(tmp_path, "orchestrate-job-boot", boot_id="an-earlier-boot")
    other_host = _signed(tmp_path, "orchestrate-job-host", host="another-host", pid=1, start_time="1")
    assert sorted(remove_dead_scratch(tmp_path)) == sorted([recycled, earlier_boot])
    assert ours.is_dir() and other_host.is_dir()


def test_unsigned_folders_go_only_once_old_and_other_names_never(tmp_path: Path) -> None:
    fresh = tmp_path / "orchestrate-job-fresh"
    old = tmp_path / "orchestrate-job-old"
    foreign = tmp_path / "orchestrate-faults-old"
    for folder in (fresh, old, foreign):
        folder.mkdir()
        (folder / "file").write_text("x")
    week_ago = time.time() - 7 * 24 * 3600
    for folder in (old, foreign):
        os.utime(folder, (week_ago, week_ago))
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "orchestrate-job-link").symlink_to(target)
    assert remove_dead_scratch(tmp_path, unowned_after=3600) == [old]
    assert fresh.is_dir() and foreign.is_dir() and target.is_dir()
