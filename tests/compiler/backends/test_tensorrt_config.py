"""The plain-Python half of the TensorRT backend: builder settings, optimization profiles,
compatibility decisions, device classes and the timing-cache file. None of this needs TensorRT."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from compiler.backends.base import EngineMeta, TensorMeta
from compiler.backends.tensorrt import TensorRTBackend
from compiler.backends.tensorrt_config import (
    BuilderSettings,
    ShapeRange,
    check_input_shape,
    default_opt,
    derive_profile,
    derive_settings,
    device_class,
    read_timing_cache,
    write_timing_cache,
)
from compiler.errors import BackendError, SpecError
from compiler.identity import DeviceIdentity, EngineRequirements, compatibility_problems
from compiler.spec import CompileSpec
from orchestrator.routing import normalize_device_class

STATIC = TensorMeta("x", "float32", (2, 8))
DYNAMIC = TensorMeta("ids", "int64", ("s0", "s1"), min=(1, 8), opt=(2, 128), max=(8, 512))


def spec(**kwargs: object) -> CompileSpec:
    return CompileSpec.parse({"backend": "tensorrt", "device": "cuda", **kwargs})


# ---------------------------------------------------------------------------- precision / flags
@pytest.mark.parametrize(
    ("precision", "flags"),
    [("fp32", ()), ("fp16", ("FP16",)), ("bf16", ("BF16",)), ("int8", ("INT8", "FP16"))],
)
def test_precision_becomes_builder_flags(precision: str, flags: tuple[str, ...]) -> None:
    settings = derive_settings(spec(precision=precision), [STATIC])
    assert settings.flags == flags
    assert settings.precision == precision


def test_tf32_is_cleared_unless_asked_for() -> None:
    assert derive_settings(spec(), [STATIC]).cleared_flags == ("TF32",)
    assert derive_settings(spec(), [STATIC], tf32=True).cleared_flags == ()


def test_defaults_leave_workspace_and_level_to_tensorrt() -> None:
    settings = derive_settings(spec(), [STATIC])
    assert settings.workspace_bytes is None
    assert settings.optimization_level == 3
    assert settings.hardware_compatibility == "NONE"
    assert settings.timing_cache is None
    assert (settings.device_index, settings.dla_core) == (0, None)


def test_workspace_level_and_timing_cache_pass_through(tmp_path: Path) -> None:
    settings = derive_settings(
        spec(),
        [STATIC],
        workspace_bytes=1 << 30,
        optimization_level=5,
        timing_cache=tmp_path / "t.cache",
    )
    assert settings.workspace_bytes == 1 << 30
    assert settings.optimization_level == 5
    assert settings.timing_cache == os.fspath(tmp_path / "t.cache")


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"workspace_bytes": 0}, "workspace"),
        ({"optimization_level": 6}, "optimization_level"),
        ({"optimization_level": -1}, "optimization_level"),
        ({"hardware_compatibility": "turing_plus"}, "hardware_compatibility"),
    ],
)
def test_bad_builder_options_name_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(SpecError, match=key):
        derive_settings(spec(), [STATIC], **kwargs)  # type: ignore[arg-type]


def test_cuda_index_selects_the_build_gpu() -> None:
    assert derive_settings(spec(device="cuda:1"), [STATIC]).device_index == 1


def test_cpu_device_is_refused_for_tensorrt() -> None:
    with pytest.raises(SpecError, match="device: .*cuda"):
        derive_settings(spec(device="cpu"), [STATIC])


def test_dla_device_sets_core_and_gpu_fallback() -> None:
    settings = derive_settings(spec(device="dla:1", precision="fp16"), [STATIC])
    assert settings.dla_core == 1
    assert settings.device_index == 0
    assert settings.flags == ("FP16", "GPU_FALLBACK")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_dla_refuses_precisions_it_cannot_run(precision: str) -> None:
    with pytest.raises(SpecError, match="precision: DLA runs fp16 or int8"):
        derive_settings(spec(device="dla:0", precision=precision), [STATIC])


def test_dla_refuses_hardware_compatibility() -> None:
    with pytest.raises(SpecError, match="hardware_compatibility"):
        derive_settings(
            spec(device="dla", precision="fp16"), [STATIC], hardware_compatibility="ampere_plus"
        )


@pytest.mark.parametrize(
    ("level", "member"),
    [
        ("none", "NONE"),
        ("ampere_plus", "AMPERE_PLUS"),
        ("same_compute_capability", "SAME_COMPUTE_CAPABILITY"),
    ],
)
def test_hardware_compatibility_maps_to_tensorrt_levels(level: str, member: str) -> None:
    settings = derive_settings(spec(), [STATIC], hardware_compatibility=level)  # type: ignore[arg-type]
    assert settings.hardware_compatibility == member


def test_version_compatibility_sets_its_flags() -> None:
    settings = derive_settings(spec(precision="fp16"), [STATIC], version_compatible=True)
    assert settings.flags == ("FP16", "VERSION_COMPATIBLE")
    assert settings.version_compatible


def test_input_dtype_tensorrt_cannot_take_is_refused() -> None:
    with pytest.raises(SpecError, match="int16"):
        derive_settings(spec(), [TensorMeta("x", "int16", (2,))])


# ------------------------------------------------------------------------------------- profiles
def test_static_input_gets_a_fixed_profile() -> None:
    (shape_range,) = derive_profile([STATIC])
    assert shape_range == ShapeRange("x", (2, 8), (2, 8), (2, 8))
    assert shape_range.is_static


def test_dynamic_input_profile_comes_from_min_opt_max() -> None:
    (shape_range,) = derive_profile([DYNAMIC])
    assert shape_range == ShapeRange("ids", (1, 8), (2, 128), (8, 512))
    assert not shape_range.is_static


def test_profile_opt_defaults_to_batch_one_or_the_minimum() -> None:
    meta = TensorMeta("x", "float32", ("s0", "s1", 3), min=(1, 16, 3), max=(8, 64, 3))
    (shape_range,) = derive_profile([meta])
    assert shape_range.opt == (1, 16, 3)
    assert default_opt((0, 2), (4, 9)) == (1, 2)


def test_profile_covers_every_input_in_order() -> None:
    assert [r.name for r in derive_profile([STATIC, DYNAMIC])] == ["x", "ids"]


def test_symbolic_input_without_range_is_refused() -> None:
    with pytest.raises(SpecError, match="inputs: x: dimensions s0 are dynamic.*set min and max"):
        derive_profile([TensorMeta("x", "float32", ("s0", 8))])


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (TensorMeta("x", "float32", ("s0", 8), min=(1,), max=(4,)), "min has rank 1"),
        (TensorMeta("x", "float32", ("s0", 8), min=(1, 8), opt=(5, 8), max=(4, 8)), "axis 0 needs"),
        (
            TensorMeta("x", "float32", ("s0", 8), min=(1, 4), max=(4, 8)),
            "axis 1 has the fixed size 8",
        ),
        (TensorMeta("x", "float32", ("s0", 8), min=(1, 8)), "needs both min and max"),
    ],
)
def test_inconsistent_ranges_are_refused(meta: TensorMeta, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        derive_profile([meta])


def test_input_shape_check_names_axis_and_range() -> None:
    shape_range = ShapeRange("ids", (1, 8), (2, 128), (8, 512))
    assert check_input_shape(shape_range, (8, 512)) is None
    assert check_input_shape(shape_range, (1, 8)) is None
    message = check_input_shape(shape_range, (9, 100))
    assert message is not None and "axis 0" in message and "[1, 8]" in message
    rank = check_input_shape(shape_range, (2,))
    assert rank is not None and "rank 1" in rank


# ------------------------------------------------------------------------------- serialization
def test_settings_round_trip_through_json() -> None:
    settings = derive_settings(
        spec(device="dla:0", precision="int8"),
        [STATIC, DYNAMIC],
        workspace_bytes=123,
        timing_cache="/tmp/cache",
    )
    again = BuilderSettings.from_dict(json.loads(json.dumps(settings.to_dict())))
    assert again == settings
    assert again.shape_range("ids") == ShapeRange("ids", (1, 8), (2, 128), (8, 512))
    assert again.shape_range("nope") is None


def test_engine_meta_with_tensorrt_extra_round_trips() -> None:
    settings = derive_settings(spec(), [DYNAMIC])
    meta = EngineMeta(
        engine_id="ab" * 32,
        backend="tensorrt",
        backend_version="10.1.0",
        inputs=(DYNAMIC,),
        outputs=(TensorMeta("y", "float32", ("s0", 4)),),
        device="cuda:0",
        extra={
            "settings": settings.to_dict(),
            "compute_capability": [9, 0],
            "tensorrt_version": "10.1.0",
        },
    )
    again = EngineMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta
    assert BuilderSettings.from_dict(again.extra["settings"]) == settings
    assert derive_profile(again.inputs) == settings.profile


# ------------------------------------------------------------------------- devices, versions
@pytest.mark.parametrize(
    ("capability", "name"),
    [((9, 0), "sm90"), ((8, 0), "sm80"), ((8, 6), "sm86"), ((8, 9), "sm89"), ((12, 0), "sm120"),
     ((8, 7), "orin"), ((7, 2), "xavier"), ((5, 3), "nano"), ((11, 0), "thor"),
     pytest.param((10, 1), "thor", marks=pytest.mark.xfail(
         reason="compiler.identity's device-class table lists Thor as 11.0 only; before CUDA 13 "
         "Thor reports 10.1", strict=True))],
)  # fmt: skip
def test_device_class_names(capability: tuple[int, int], name: str) -> None:
    assert device_class(*capability) == name
    # The name becomes part of a farm queue, so routing must accept it unchanged.
    assert normalize_device_class(name) == name


def _meta(
    version: str = "10.1.0", cc: tuple[int, int] = (9, 0), arch: str = "x86_64", **settings: object
) -> EngineMeta:
    extra = {
        "tensorrt_version": version,
        "compute_capability": list(cc),
        "arch": arch,
        "settings": {"hardware_compatibility": "NONE", **settings},
    }
    return EngineMeta("0" * 64, "tensorrt", version, (STATIC,), (STATIC,), "cuda:0", extra)


def _here(version: str = "10.1.0", cc: str | None = "9.0", arch: str = "x86_64") -> DeviceIdentity:
    return DeviceIdentity(arch=arch, compute_capability=cc, tensorrt_version=version)


BACKEND = TensorRTBackend()


def problems(meta: EngineMeta, here: DeviceIdentity) -> str:
    return "; ".join(BACKEND.compatibility_problems(meta, here))


@pytest.mark.parametrize(
    ("meta", "here", "refused", "words"),
    [
        (_meta(), _here(), False, []),
        (_meta(), _here(arch="aarch64"), True, ["x86_64", "aarch64"]),
        (_meta(), _here(cc=None), True, ["CUDA GPU"]),
        (_meta(cc=(8, 6)), _here(), True, ["sm86", "sm90"]),
        (_meta(cc=(8, 7)), _here(cc="7.2"), True, ["sm87", "sm72"]),
        (_meta(), _here("10.3.0"), True, ["TensorRT 10.1", "10.3.0"]),
        (_meta(), _here("10.1.1"), True, ["10.1.0", "10.1.1", "exact release"]),
        (_meta(version_compatible=True), _here("10.3.0.26"), False, []),
        (_meta(version_compatible=True), _here("10.0.1"), True, ["from 10.1.0 on"]),
        (_meta(version_compatible=True), _here("11.0.0"), True, ["TensorRT 10.x"]),
        (_meta(cc=(8, 6), hardware_compatibility="AMPERE_PLUS"), _here(cc="9.0"), False, []),
        (_meta(cc=(8, 6), hardware_compatibility="AMPERE_PLUS"), _here(cc="8.0"), False, []),
        (_meta(cc=(8, 6), hardware_compatibility="AMPERE_PLUS"), _here(cc="7.5"), True, ["Ampere", "sm75"]),
        (_meta(cc=(8, 6), hardware_compatibility="SAME_COMPUTE_CAPABILITY"), _here(cc="9.0"), True, ["sm86"]),
    ],
)  # fmt: skip
def test_compatibility_decisions(
    meta: EngineMeta, here: DeviceIdentity, refused: bool, words: list[str]
) -> None:
    message = problems(meta, here)
    assert bool(message) == refused, message
    for word in words:
        assert word in message


def test_requirements_are_what_identity_compares_for_every_backend() -> None:
    """The farm (``artifacts get``, ``compiler.load``) sees the same needs that ``load`` checks:
    ``compatibility_problems`` of ``requirements`` is the first half of the backend's decision."""
    built_on = DeviceIdentity(arch="aarch64")
    needs = BACKEND.requirements(_meta(cc=(8, 7)), built_on)
    assert needs == EngineRequirements(
        arch="aarch64", gpu=True, compute_capability="8.7", tensorrt_version="10.1.0"
    )
    portable = BACKEND.requirements(
        _meta(hardware_compatibility="AMPERE_PLUS", version_compatible=True), built_on
    )
    assert portable.compute_capability is None and portable.tensorrt_version is None
    for meta, here in [(_meta(cc=(8, 6)), _here()), (_meta(), _here("10.3.0"))]:
        shared = compatibility_problems(BACKEND.requirements(meta, DeviceIdentity("x86_64")), here)
        assert shared and BACKEND.compatibility_problems(meta, here)[: len(shared)] == shared


def test_a_difference_is_reported_once() -> None:
    (problem,) = BACKEND.compatibility_problems(_meta(), _here("10.3.0"))
    assert "10.1" in problem


# ---------------------------------------------------------------------------------- timing cache
def test_missing_timing_cache_reads_as_empty(tmp_path: Path) -> None:
    assert read_timing_cache(tmp_path / "none.cache") == b""


def test_timing_cache_write_replaces_the_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "caches" / "sm90.cache"
    write_timing_cache(path, b"first")
    write_timing_cache(path, b"second")
    assert read_timing_cache(path) == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["sm90.cache"]


def test_unwritable_timing_cache_is_a_backend_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(BackendError, match="cannot write the TensorRT timing cache"):
        write_timing_cache(blocker / "sub" / "t.cache", b"x")
    with pytest.raises(BackendError, match="cannot read the TensorRT timing cache"):
        read_timing_cache(tmp_path)
