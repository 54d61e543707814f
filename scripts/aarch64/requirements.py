"""The requirements of the aarch64 root, evaluated for aarch64 (pip evaluates markers for the host).

    python scripts/aarch64/requirements.py pyproject.toml torch-2.8.0-...-aarch64.whl

Prints orchestrate's dependencies (with the ``postgres`` extra) except torch, then torch's own
requirements read from its wheel, each kept only where its marker holds on Debian bookworm's
arm64 Python. On an x86_64 host pip would evaluate ``platform_machine == "x86_64"`` as true and
pull torch's CUDA wheels, which do not exist for aarch64 (nor are they wanted there).
"""

from __future__ import annotations

import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

# Debian bookworm, arm64: python3 is CPython 3.11.
TARGET = {
    "implementation_name": "cpython",
    "platform_machine": "aarch64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "platform_python_implementation": "CPython",
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_version": "3.11.2",
}


def holds(requirement: Requirement, extra: str = "") -> bool:
    if requirement.marker is None:
        return True
    return requirement.marker.evaluate({**TARGET, "extra": extra})


def project_requirements(pyproject: Path) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    names = [*project["dependencies"], *project["optional-dependencies"]["postgres"]]
    return [r for r in map(Requirement, names) if r.name != "torch" and holds(r)]


def wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        headers = HeaderParser().parsestr(archive.read(metadata).decode())
    return [r for r in map(Requirement, headers.get_all("Requires-Dist") or []) if holds(r)]


def main(pyproject: str, torch_wheel: str) -> None:
    for requirement in [*project_requirements(Path(pyproject)), *wheel_requirements(Path(torch_wheel))]:
        requirement.marker = None  # already decided for the target; pip must not re-decide it
        print(requirement)


if __name__ == "__main__":
    main(*sys.argv[1:])
