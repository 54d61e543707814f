"""A real aarch64 worker under emulation, end to end (marker ``aarch64``; outside the default run).

Runs ``bash scripts/aarch64-worker.sh check``: an arm64 Debian root through qemu-user-static and
binfmt_misc, ``orchestrate worker --arch auto`` inside it, ``orchestrate submit --arch aarch64
--wait`` from the host. The first run builds the root and downloads the wheels (about 26 minutes
here); later runs reuse them from ``$ORCHESTRATE_AARCH64_DIR`` (default ``.data/aarch64``). Needs
root. README.md (*An aarch64 worker under emulation*) records a run.

    ORCHESTRATE_AARCH64_E2E=1 python -m pytest -m aarch64 tests/workers/test_aarch64_emulated.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.aarch64,
    pytest.mark.skipif(
        os.environ.get("ORCHESTRATE_AARCH64_E2E") != "1",
        reason="builds an emulated arm64 root (minutes): set ORCHESTRATE_AARCH64_E2E=1 and run -m aarch64",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (apt-get, mount, chroot)"),
    pytest.mark.timeout(3600),
]


def test_emulated_aarch64_worker_builds_and_validates_an_engine_recorded_as_built_on_aarch64() -> None:
    # The host side of the check (submit, queries) runs on this interpreter and its packages.
    env = {"ORCHESTRATE_AARCH64_HOST_PYTHON": sys.executable, **os.environ}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "aarch64-worker.sh"), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=3500,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "aarch64 check passed" in output
    assert '"arch": "aarch64"' in output  # the artifact's built_on, as the check printed it
