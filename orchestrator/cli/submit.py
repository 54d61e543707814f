"""``orchestrate submit MODEL --arch ARCH``: queue a build per target (cached targets answer at once)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from orchestrator.cli._common import BackendChoice, json_option, print_json, state, warn
from orchestrator.cli._jobs import exit_with_job_states, follow, print_jobs

if TYPE_CHECKING:
    from orchestrator.remote import RemoteFarm
    from orchestrator.services import Farm, Submission


@click.command("submit")
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--arch",
    "archs",
    multiple=True,
    metavar="ARCH",
    help="Target architecture: x86_64 or aarch64 (amd64/arm64 accepted). Repeat to build for "
    "several; default: this machine's.",
)
@click.option("--device-class", metavar="CLASS", help="GPU class of the target, e.g. sm90 or orin.")
@click.option(
    "--spec", "spec_file", type=click.Path(dir_okay=False, path_type=str), help="Compile spec (YAML)."
)
@click.option("--backend", type=BackendChoice(), help="Overrides the spec.")
@click.option(
    "--precision", type=click.Choice(["fp32", "fp16", "bf16", "int8"]), help="Overrides the spec."
)
@click.option(
    "--name",
    help="Model name shown in listings (default: the file name). No '/', '\\', ':', control "
    "characters or leading '.'; a model already stored keeps its first name.",
)
@click.option(
    "--validation-data",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="FILE",
    help="Validate on this data (.safetensors or .npz: one tensor per model input, samples "
    "first, optional integer `labels` for task accuracy) instead of generated inputs.",
)
@click.option(
    "--calibration-data",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="FILE",
    help="Calibrate int8 on this data (same format; default: the validation data).",
)
@click.option("--wait", "wait_", is_flag=True, help="Wait for the builds, showing each phase.")
@click.option("--timeout", type=click.FloatRange(min=0), help="With --wait: give up after this many seconds (exit 4).")
@json_option
def submit_command(
    model: str,
    archs: tuple[str, ...],
    device_class: str | None,
    spec_file: str | None,
    backend: str | None,
    precision: str | None,
    name: str | None,
    validation_data: str | None,
    calibration_data: str | None,
    wait_: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Submit MODEL (a torch.export .pt2 file) to be built for each --arch.

    The file is checked before it is accepted: anything that could run code when loaded is
    refused. Data files are checked against the model's inputs (names, shapes within the
    spec's ranges, dtypes, no NaNs, no pickles) before anything is stored or queued. A target that already has an engine for this model, spec and backend version is
    answered from the cache without a new build.
    """
    from orchestrator import services
    from orchestrator.client import _local_arch

    targets = services.resolve_targets(list(archs) or [_local_arch()], device_class)
    remote = state().remote()
    if remote is not None:
        # The spec is resolved (and refused) here as in direct mode, then sent whole; the
        # server checks the model and the spec again against its own limits.
        spec = services.resolve_spec(spec_file, backend=backend, precision=precision)
        data_files = {
            role: path for role, path in (("validation", validation_data), ("calibration", calibration_data)) if path
        }
        submission = remote.submit(
            model, [t.arch for t in targets], spec.canonical_json(), device_class=device_class, name=name,
            data_files=data_files,
        )
        _report(submission, remote, wait_, timeout, as_json)
        return
    farm = state().get_farm()
    spec = services.resolve_spec(
        spec_file, backend=backend, precision=precision, max_bytes=farm.settings.max_spec_bytes
    )
    submission = services.submit(
        farm, model, targets, spec, name=name, validation_data=validation_data, calibration_data=calibration_data
    )
    _report(submission, farm, wait_, timeout, as_json)


def _report(
    submission: Submission, farm: Farm | RemoteFarm, wait_: bool, timeout: float | None, as_json: bool
) -> None:
    for message in submission.warnings:
        warn(message)
    jobs = submission.jobs
    if wait_:
        jobs = follow(farm, jobs, timeout)
    if as_json:
        print_json({"jobs": [job.to_dict() for job in jobs], "warnings": submission.warnings})
    else:
        print_jobs(jobs)
    exit_with_job_states(jobs)
