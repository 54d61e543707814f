"""The pieces of ``scripts/aarch64-worker.sh``, checked without building or downloading anything.

The script's real run (debootstrap, wheels, an emulated worker) is ``test_aarch64_emulated.py``,
marked ``aarch64`` and outside the default suite.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from workers.capabilities import detect_cpu

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "aarch64-worker.sh"
CPUINFO = REPO / "scripts" / "aarch64" / "cpuinfo"


def _script_module(name: str):
    spec = importlib.util.spec_from_file_location(f"aarch64_{name}", REPO / "scripts" / "aarch64" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[str]]]:
    """``aarch64-worker.sh plan``'s commands by label, each split as the shell would."""
    data = tmp_path_factory.mktemp("aarch64")
    env = {**os.environ, "ORCHESTRATE_AARCH64_DIR": str(data / "cache")}
    env.pop("ORCHESTRATE_AARCH64_MIRROR", None)
    out = subprocess.run(["bash", str(SCRIPT), "plan"], env=env, capture_output=True, text=True, check=True)
    assert not (data / "cache").exists(), "plan must not create or download anything"
    commands: dict[str, list[list[str]]] = {}
    for line in out.stdout.splitlines():
        label, _, command = line.partition(": ")
        commands.setdefault(label, []).append(shlex.split(command))
    return commands


def _options(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]


def test_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_root_is_an_arm64_debian_with_python_venv_and_pip(plan: dict[str, list[list[str]]]) -> None:
    (argv, second) = plan["root"]
    assert argv[0] == "debootstrap" and "--arch=arm64" in argv and "--foreign" in argv
    (include,) = [a for a in argv if a.startswith("--include=")]
    assert {"python3", "python3-venv", "python3-pip"} <= set(include.split("=", 1)[1].split(","))
    suite, root, mirror = argv[-3:]
    assert suite == "bookworm" and root.endswith("/cache/root")
    assert re.fullmatch(r"https?://\S+/debian/?", mirror), mirror
    assert second == ["chroot", root, "/debootstrap/debootstrap", "--second-stage"]


def test_mirror_is_the_one_apt_uses_or_the_override(tmp_path: Path) -> None:
    env = {**os.environ, "ORCHESTRATE_AARCH64_DIR": str(tmp_path), "ORCHESTRATE_AARCH64_MIRROR": "http://mirror.example/debian"}
    out = subprocess.run(["bash", str(SCRIPT), "plan"], env=env, capture_output=True, text=True, check=True)
    assert "bookworm " + str(tmp_path / "root") + " http://mirror.example/debian" in out.stdout


def _pip_tags(argv: list[str]) -> set[Tag]:
    """The tags pip accepts with these options (pip builds them with these packaging calls)."""
    (version,) = _options(argv, "--python-version")
    python = tuple(int(part) for part in version.split("."))
    platforms = _options(argv, "--platform")
    interpreter = f"cp{version.replace('.', '')}"
    return {
        *cpython_tags(python, abis=_options(argv, "--abi"), platforms=platforms),
        *compatible_tags(python, interpreter, platforms=platforms),
    }


def test_wheel_download_spells_out_every_manylinux_tag_of_the_root(plan: dict[str, list[list[str]]]) -> None:
    for label in ("torch", "wheels"):
        (argv,) = plan[label]
        assert argv[1:4] == ["-m", "pip", "download"] and "--only-binary=:all:" in argv
        # Debian bookworm: CPython 3.11, glibc 2.36; pip accepts only the tags it is given.
        assert _options(argv, "--python-version") == ["3.11"]
        expected = ["manylinux2014_aarch64"] + [f"manylinux_2_{n}_aarch64" for n in range(17, 37)]
        assert _options(argv, "--platform") == expected
    assert "--no-deps" in plan["torch"][0]


@pytest.mark.parametrize(
    "wheel",
    [
        "torch-2.8.0-cp311-cp311-manylinux_2_28_aarch64.whl",
        "onnxruntime-1.22.1-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
        "numpy-2.3.1-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "pydantic_core-2.33.2-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "psycopg_binary-3.2.9-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "uvloop-0.21.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "click-8.2.1-py3-none-any.whl",
    ],
)
def test_tags_accept_the_wheels_our_dependencies_publish(plan: dict[str, list[list[str]]], wheel: str) -> None:
    _, _, _, tags = parse_wheel_filename(wheel)
    assert tags & _pip_tags(plan["wheels"][0])


def test_x86_wheels_are_not_accepted(plan: dict[str, list[list[str]]]) -> None:
    _, _, _, tags = parse_wheel_filename("torch-2.8.0-cp311-cp311-manylinux_2_28_x86_64.whl")
    assert not tags & _pip_tags(plan["wheels"][0])


def test_pinned_torch_meets_the_project_floor(plan: dict[str, list[list[str]]]) -> None:
    (pin,) = [a for a in plan["torch"][0] if a.startswith("torch==")]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (floor,) = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == "torch"]
    assert floor.specifier.contains(pin.split("==")[1])


def _fake_torch_wheel(path: Path) -> Path:
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: torch",
            "Version: 2.8.0",
            "Requires-Dist: filelock",
            'Requires-Dist: setuptools; python_version >= "3.12"',
            "Requires-Dist: sympy>=1.13.3",
            'Requires-Dist: nvidia-cudnn-cu12==9.10.2.21; platform_system == "Linux" and platform_machine == "x86_64"',
            'Requires-Dist: triton==3.4.0; platform_system == "Linux" and platform_machine == "x86_64"',
            'Requires-Dist: opt-einsum>=3.3; extra == "opt-einsum"',
            "",
        ]
    )
    wheel = path / "torch-2.8.0-cp311-cp311-manylinux_2_28_aarch64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("torch-2.8.0.dist-info/METADATA", metadata)
    return wheel


def test_requirements_are_evaluated_for_aarch64_not_the_host(tmp_path: Path) -> None:
    requirements = _script_module("requirements")
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts/aarch64/requirements.py"), str(REPO / "pyproject.toml"), str(_fake_torch_wheel(tmp_path))],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    names = {Requirement(line).name for line in out.stdout.splitlines()}
    assert {"filelock", "sympy", "onnxruntime", "celery", "psycopg", "uvloop"} <= names
    # torch is downloaded on its own; CUDA wheels are x86_64-only requirements of the 2.8 wheel.
    assert not names & {"torch", "nvidia-cudnn-cu12", "triton", "setuptools", "opt-einsum", "tomli"}
    assert requirements.TARGET["platform_machine"] == "aarch64"
    assert all(";" not in line for line in out.stdout.splitlines()), "markers are decided already"


def test_cpuinfo_is_an_arm64_one() -> None:
    blocks = [b for b in CPUINFO.read_text().split("\n\n") if b.strip()]
    assert blocks
    for number, block in enumerate(blocks):
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in block.splitlines())
        )
        assert fields["processor"] == str(number)
        assert fields["CPU architecture"] == "8"
        assert fields["CPU implementer"].startswith("0x") and fields["CPU part"].startswith("0x")
        assert {"fp", "asimd"} <= set(fields["Features"].split())
        assert "flags" not in fields and "vendor_id" not in fields  # nothing of an x86 one


def test_worker_reads_the_cpuinfo_as_its_cpu(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(CPUINFO.read_text())
    assert detect_cpu(tmp_path) == "0xd0c"  # Arm Neoverse N1
