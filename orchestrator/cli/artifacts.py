"""``orchestrate artifacts list|show|get|verify``: built engines and where they came from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli._common import (
    BackendChoice,
    json_option,
    key_values,
    print_json,
    short,
    state,
    styled,
    table,
)

if TYPE_CHECKING:
    from compiler.identity import DeviceIdentity
    from orchestrator.services import ArtifactInfo


@click.group("artifacts")
def artifacts_group() -> None:
    """Engine artifacts: list them, show one, download one, verify what the store holds."""


@artifacts_group.command("list")
@click.option("--model", help="Name, id or sha256 of the model.")
@click.option("--arch", help="x86_64 or aarch64.")
@click.option("--device-class", help="e.g. sm90 or orin.")
@click.option("--backend", type=BackendChoice())
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16", "int8"]))
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option(
    "--runs-here",
    is_flag=True,
    help="Only artifacts whose engines can run on this machine (architecture, GPU, versions).",
)
@json_option
def list_command(
    model: str | None,
    arch: str | None,
    device_class: str | None,
    backend: str | None,
    precision: str | None,
    limit: int,
    runs_here: bool,
    as_json: bool,
) -> None:
    """List artifacts matching every filter, newest first."""

    artifacts = state().farm_api().list_artifacts(
        model=model,
        arch=arch,
        device_class=device_class,
        backend=backend,
        precision=precision,
        limit=limit,
        runs_on=_this_machine() if runs_here else None,
    )
    if as_json:
        print_json([artifact.to_dict() for artifact in artifacts])
        return
    table(
        f"{len(artifacts)} artifact(s)",
        ["artifact", "model", "target", "backend", "precision", "size", "engines", "created"],
        [
            (
                short(a.id),
                a.model_name,
                a.target,
                f"{a.backend} {a.backend_version}",
                a.precision,
                f"{a.size_bytes / 1024:.1f} KiB",
                a.partition_stats.get("num_engines", "-"),
                (a.created_at or "")[:19].replace("T", " "),
            )
            for a in artifacts
        ],
    )


@artifacts_group.command("show")
@click.argument("artifact_id", metavar="ID")
@json_option
def show_command(artifact_id: str, as_json: bool) -> None:
    """Show one artifact (an id or a unique prefix)."""

    artifact = state().farm_api().get_artifact(artifact_id)
    if as_json:
        print_json(artifact.to_dict())
        return
    stats = artifact.partition_stats
    fallback = stats.get("fallback_ops") or {}
    problems = artifact.problems_on(_this_machine())
    key_values(
        f"artifact {short(artifact.id)}",
        [
            ("artifact", artifact.id),
            ("model", f"{artifact.model_name} ({short(artifact.model_id)})"),
            ("built by job", artifact.job_id),
            ("target", artifact.target),
            ("backend", f"{artifact.backend} {artifact.backend_version}"),
            ("precision", artifact.precision),
            ("spec sha256", artifact.spec_sha256),
            ("uri", artifact.uri),
            ("sha256", artifact.sha256),
            ("size", f"{artifact.size_bytes} bytes"),
            ("engines", stats.get("num_engines")),
            ("accelerated nodes", stats.get("num_accelerated_nodes")),
            ("fallback nodes", stats.get("num_fallback_nodes")),
            ("fallback ops", ", ".join(f"{op} x{n}" for op, n in fallback.items()) or "none"),
            ("built on", describe_identity(artifact.built_on)),
            ("needs", describe_requirements(artifact)),
            ("runs here", "yes" if not problems else "no: " + "; ".join(problems)),
            ("accuracy gate", artifact.gate or "-"),
            ("created", artifact.created_at),
        ],
    )


def _this_machine() -> DeviceIdentity:
    import compiler

    return compiler.local_identity()


def describe_identity(identity: dict[str, Any] | None) -> str:
    """``x86_64/sm90, NVIDIA H200, driver 580.159.04, CUDA 13.0, torch 2.11.0+cu130``."""
    if not identity:
        return "not recorded"
    target = identity.get("arch", "?") + (f"/{identity['device_class']}" if identity.get("device_class") else "")
    parts = [target, identity.get("gpu_name") or identity.get("jetson_module")]
    for label, key in (("driver", "driver_version"), ("CUDA", "cuda_version"), ("torch", "torch_version"),
                       ("TensorRT", "tensorrt_version"), ("L4T", "l4t_release")):
        if identity.get(key):
            parts.append(f"{label} {identity[key]}")
    return ", ".join(p for p in parts if p)


def describe_requirements(artifact: ArtifactInfo) -> str:
    """What a machine must have to run the artifact's engines, in words."""
    from compiler.identity import major_minor

    words = []
    for need in artifact.requirements():
        terms = [need.arch]
        if need.compute_capability:
            terms.append(f"a GPU of compute capability {need.compute_capability}")
        elif need.gpu:
            terms.append("a CUDA GPU")
        if need.torch_version:
            terms.append(f"PyTorch {major_minor(need.torch_version)}")
        if need.tensorrt_version:
            terms.append(f"TensorRT {major_minor(need.tensorrt_version)}")
        words.append(" + ".join(t for t in terms if t) or "any machine with the backend")
    if artifact.engine_requirements is None:
        words.append("(not recorded; judged from the target)")
    return "; ".join(words) or "any machine with the backend"


@artifacts_group.command("get")
@click.argument("artifact_id", metavar="ID")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="File to write, or a folder to write into.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite an existing file, and download even an engine that cannot run on this "
    "machine (another architecture, GPU generation, or PyTorch/TensorRT version).",
)
@click.option(
    "--allow-rejected",
    is_flag=True,
    help="Download even an engine the accuracy gate rejected (to inspect it).",
)
@json_option
def get_command(artifact_id: str, output: Path, force: bool, allow_rejected: bool, as_json: bool) -> None:
    """Download an artifact's engine package, verified against its sha256.

    Only a regular file is ever written (never a device, pipe or link), through a temporary
    file in the same folder that is renamed into place once its sha256 matches; an existing
    file is kept unless --force. An engine that cannot run on this machine is refused with the
    reason (exit code 2) unless --force is given, and an engine the accuracy gate rejected
    unless --allow-rejected.
    """

    path = state().farm_api().download_artifact(
        artifact_id, output, overwrite=force, force=force, allow_rejected=allow_rejected
    )
    if as_json:
        print_json({"artifact_id": artifact_id, "path": str(path)})
    else:
        click.echo(str(path))


@artifacts_group.command("verify")
@click.argument("artifact_ids", metavar="[ID]...", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every artifact and model the database records.")
@json_option
def verify_command(artifact_ids: tuple[str, ...], everything: bool, as_json: bool) -> None:
    """Re-hash stored objects against the sha256 and size the database recorded.

    Exit 0 when every object is intact, 1 when one is missing or altered.
    """
    from orchestrator import services

    checked = services.verify_objects(state().get_farm(), artifact_ids, everything=everything)
    if as_json:
        print_json([result.to_dict() for result in checked])
    else:
        table(
            f"{len(checked)} object(s) verified",
            ["id", "kind", "state", "uri"],
            [
                (
                    short(r.id),
                    r.kind,
                    styled("ok", "green") if r.ok else styled(f"BAD: {r.problem}", "red"),
                    r.uri,
                )
                for r in checked
            ],
        )
    if not all(result.ok for result in checked):
        raise click.exceptions.Exit(1)
