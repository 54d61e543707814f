"""Save and load compiled programs: one ``.pt2`` file with the program, engines and a manifest.

The stitched program is exported again (its engine calls are ``execute_engine`` custom-op nodes)
and written with ``torch.export.save``. Engine bytes and ``manifest.json`` (spec, versions,
target, sha256 of every engine, input ranges, report) are added as archive members under
``orchestrate/`` (engines) and ``extra/orchestrate/`` (manifest); loading verifies each engine's hash, registers the engines, and hands the
rest to ``torch.export.load`` only after the archive passed the untrusted-pickle check.

The manifest records the identity of the machine that built the program (``built_on``); loading
asks each engine's backend what its engine needs of a machine (``Backend.requirements``) and
refuses, before any engine is handed to its backend, a program that cannot run here.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import fx
from torch.utils import _pytree as pytree

from compiler.backends import EngineMeta, get_backend
from compiler.errors import CompilerError, InvalidModelError, UnsafeModelError
from compiler.frontend import (
    DEFAULT_MAX_BYTES,
    TORCH_LOAD_LOCK,
    InputInfo,
    _read_limited,
    sanitize_archive,
)
from compiler.identity import (
    DeviceIdentity,
    EngineRequirements,
    IncompatibleEngineError,
    canonical_arch,
    compatibility_problems,
    local_identity,
    machine_arch,
)
from compiler.report import CompileReport
from compiler.runtime.engine_op import acquire_engine, release_engine
from compiler.runtime.module import CompiledModule
from compiler.spec import CompileSpec

FORMAT_VERSION = 1
_PREFIX = "orchestrate/"


class EngineIntegrityError(InvalidModelError):
    kind = "engine_corrupt"


def manifest(compiled: CompiledModule) -> dict[str, Any]:
    import compiler

    return {
        "format": FORMAT_VERSION,
        "spec": compiled.spec.model_dump(mode="json"),
        "versions": {
            "orchestrate": compiler.__version__,
            "torch": torch.__version__,
            **{meta.backend: meta.backend_version for meta, _ in compiled.engines.values()},
        },
        "target": {"arch": platform.machine(), "device": compiled.spec.device},
        "built_on": local_identity().to_dict(),
        "inputs": [info.to_dict() for info in compiled.signature],
        "engines": [
            {**meta.to_dict(), "sha256": hashlib.sha256(engine).hexdigest(), "size": len(engine)}
            for meta, engine in compiled.engines.values()
        ],
        "report": compiled.report.to_dict(),
    }


def save(compiled: CompiledModule, path: str | Path) -> Path:
    path = Path(path)
    program = export_program(compiled)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.pt2")
    torch.export.save(program, tmp, extra_files={f"{_PREFIX}manifest.json": json.dumps(manifest(compiled))})
    with zipfile.ZipFile(tmp, "a") as archive:
        root = archive.namelist()[0].split("/")[0]
        for meta, engine in compiled.engines.values():
            # outside extra/: torch.export.load reads extra/ members as text
            archive.writestr(f"{root}/{_PREFIX}engines/{meta.engine_id}.bin", engine)
    tmp.replace(path)  # never leave a half-written file under the final name
    return path


def export_program(compiled: CompiledModule) -> torch.export.ExportedProgram:
    """The stitched program as an ExportedProgram with the compiled dynamic ranges."""
    flat = compiled.example_inputs("export")
    dims = _dynamic_dims(compiled.program_graph, compiled.signature)
    if compiled._in_spec is not None:
        args, kwargs = pytree.tree_unflatten(flat, compiled._in_spec)
        dynamic = pytree.tree_unflatten(dims, compiled._in_spec) if any(dims) else None
    else:
        args, kwargs, dynamic = tuple(flat), {}, (tuple(dims) if any(dims) else None)
    if dynamic is not None and compiled._in_spec is not None:
        dyn_args, dyn_kwargs = dynamic
        dynamic = {**dict(zip(_positional_names(compiled.program_graph), dyn_args, strict=False)), **dyn_kwargs}
    return torch.export.export(compiled.program_graph, tuple(args), dict(kwargs), dynamic_shapes=dynamic)


def _positional_names(gm: fx.GraphModule) -> list[str]:
    import inspect

    return [
        p.name
        for p in inspect.signature(gm.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def _dynamic_dims(gm: fx.GraphModule, signature: list[InputInfo]) -> list[Any]:
    """Per input, {axis: Dim} for its dynamic axes; inputs sharing a symbol share the Dim."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    by_symbol: dict[str, Any] = {}
    result: list[Any] = []
    for node, info in zip(placeholders, signature, strict=False):
        fake = node.meta.get("val")
        axes: dict[int, Any] = {}
        for axis, (size, rng) in enumerate(zip(fake.shape, info.dims, strict=False)):
            if rng.static or not isinstance(size, torch.SymInt):
                continue
            key = str(size.node.expr)
            if key not in by_symbol:
                # an unbounded dimension stays unbounded in the saved program (max=None)
                by_symbol[key] = torch.export.Dim(f"{info.name}_{axis}", min=rng.min, max=rng.max)
            axes[axis] = by_symbol[key]
        result.append(axes or None)
    return result


def built_on(info: Mapping[str, Any]) -> DeviceIdentity:
    """The identity a manifest records; older manifests knew only the architecture."""
    recorded = info.get("built_on")
    if recorded:
        return DeviceIdentity.from_dict(dict(recorded))
    arch = str(info.get("target", {}).get("arch") or machine_arch())
    return DeviceIdentity(arch=canonical_arch(arch))


def program_requirements(info: Mapping[str, Any]) -> list[EngineRequirements]:
    """What the program of manifest ``info`` needs of a machine: one entry per distinct need of
    its engines (none for a program that runs no engine), as each engine's backend says."""
    origin = built_on(info)
    needs = [
        get_backend(meta.backend, require_available=False).requirements(meta, origin)
        for meta in (EngineMeta.from_dict(entry) for entry in info.get("engines", []))
    ]
    return list(dict.fromkeys(needs))


def incompatibility(needs: Sequence[EngineRequirements], here: DeviceIdentity) -> list[str]:
    """Why a program with ``needs`` cannot run on ``here`` (each reason once); empty if it can."""
    return list(dict.fromkeys(p for need in needs for p in compatibility_problems(need, here)))


_MANIFEST_MAX_BYTES = 64 * 1024 * 1024


def read_manifest(source: str | Path | bytes) -> dict[str, Any]:
    """The manifest of a compiled program: one JSON member, read without reading the rest of
    the archive, loading the program or unpickling anything."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            member = next(
                (i for i in archive.infolist() if i.filename.split("/", 1)[-1] == f"extra/{_PREFIX}manifest.json"),
                None,
            )
            if member is not None and member.file_size > _MANIFEST_MAX_BYTES:
                raise InvalidModelError(f"the manifest is {member.file_size} bytes; this is not a compiled program")
            return _manifest_of({} if member is None else {f"extra/{_PREFIX}manifest.json": archive.read(member)})
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidModelError(f"not a compiled program: {exc}") from None


def _manifest_of(extras: Mapping[str, bytes]) -> dict[str, Any]:
    """The manifest as a JSON object of our format. Anything malformed is an
    EngineIntegrityError: the manifest is ours, so a bad one was altered."""
    manifest_bytes = extras.get(f"extra/{_PREFIX}manifest.json")
    if manifest_bytes is None:
        raise InvalidModelError("not a compiled program: extra/orchestrate/manifest.json is missing (compile it first)")
    try:
        info = json.loads(manifest_bytes)
        if not isinstance(info, dict):
            raise TypeError("the manifest is not a JSON object")
        for key in ("inputs", "spec", "report", "engines"):
            if key not in info:
                raise KeyError(key)
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineIntegrityError(
            f"the engine package's manifest is damaged ({type(exc).__name__}: {exc}); the file was altered"
        ) from None
    if info.get("format") != FORMAT_VERSION:
        raise InvalidModelError(f"compiled-program format {info.get('format')} is not supported (expected {FORMAT_VERSION})")
    return info


def _read_engines(info: dict[str, Any], extras: Mapping[str, bytes]) -> dict[str, tuple[EngineMeta, bytes]]:
    """The engines the manifest lists, each checked against its sha256."""
    engines: dict[str, tuple[EngineMeta, bytes]] = {}
    try:
        for entry in info["engines"]:
            meta = EngineMeta.from_dict(entry)
            engine = extras.get(f"{_PREFIX}engines/{meta.engine_id}.bin")
            if engine is None:
                raise EngineIntegrityError(f"engine {meta.engine_id[:12]} is missing from the archive")
            digest = hashlib.sha256(engine).hexdigest()
            if digest != entry["sha256"] or digest != meta.engine_id:
                raise EngineIntegrityError(f"engine {meta.engine_id[:12]} does not match its sha256; the file is damaged")
            engines[meta.engine_id] = (meta, engine)
    except InvalidModelError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EngineIntegrityError(
            f"the engine package's manifest is damaged ({type(exc).__name__}: {exc}); the file was altered"
        ) from None
    return engines


def load(
    source: str | Path | bytes,
    max_bytes: int | None = None,
    *,
    force: bool = False,
    here: DeviceIdentity | None = None,
) -> CompiledModule:
    """Load a compiled program. An engine that cannot run on this machine (``here``, detected by
    default) is refused with the reason, before its backend sees it, unless ``force``."""
    limit = max_bytes or DEFAULT_MAX_BYTES
    data = _read_limited(source, limit)
    try:
        cleaned, extras = sanitize_archive(data, keep_prefix=(f"extra/{_PREFIX}", _PREFIX), max_inflated_bytes=limit)
    except UnsafeModelError:
        raise
    except InvalidModelError as exc:
        # A bad CRC or a cut-off member in an engine package means it was altered or damaged.
        raise EngineIntegrityError(f"the engine package is damaged: {exc}") from None
    info = _manifest_of(extras)
    engines = _read_engines(info, extras)
    try:
        signature = [InputInfo.from_dict(i) for i in info["inputs"]]
        spec = CompileSpec.parse(info["spec"], "manifest spec")
        report = CompileReport.from_dict(info["report"])
    except (CompilerError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EngineIntegrityError(f"the engine package's manifest is damaged ({type(exc).__name__}: {exc})") from None
    if not force:
        problems = incompatibility(program_requirements(info), here or local_identity())
        if problems:
            origin = built_on(info)
            raise IncompatibleEngineError(
                f"this compiled program (built on {origin.arch}"
                f"{'/' + origin.device_class if origin.device_class else ''}) cannot run on this "
                f"machine: {'; '.join(problems)}. Rebuild it for this machine, or load it with "
                "force=True to try anyway"
            )
    acquired: list[str] = []
    try:
        for meta, engine in engines.values():
            backend = get_backend(meta.backend)
            acquire_engine(meta, lambda b=backend, e=engine, m=meta: b.load(e, m))  # type: ignore[misc]
            acquired.append(meta.engine_id)
    except BaseException:
        for engine_id in acquired:
            release_engine(engine_id)
        raise
    try:
        with TORCH_LOAD_LOCK:
            program = torch.export.load(io.BytesIO(cleaned))
    except Exception as exc:  # torch raises many exception types for a malformed archive
        for engine_id in acquired:
            release_engine(engine_id)
        raise EngineIntegrityError(f"the program in the engine package cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    gm = program.module()
    assert isinstance(gm, fx.GraphModule)
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and str(node.target) == "_guards_fn" and not node.users:
            gm.graph.erase_node(node)
    gm.recompile()
    return CompiledModule(gm, signature, spec, engines, report)
