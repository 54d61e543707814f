"""``orchestrate compile``: compile a model locally, no farm involved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from orchestrator.cli._common import (
    BackendChoice,
    console,
    json_option,
    print_json,
    seconds,
    styled,
    table,
)


def _spec(spec_file: Path | None, overrides: dict[str, Any], partitioning: dict[str, Any]) -> Any:
    import compiler

    base = compiler.CompileSpec.from_file(spec_file) if spec_file else compiler.CompileSpec()
    data = base.model_dump(mode="json")
    data.update({k: v for k, v in overrides.items() if v is not None})
    data["partitioning"].update({k: v for k, v in partitioning.items() if v not in (None, (), False)})
    return compiler.CompileSpec.parse(data, str(spec_file or "command line"))


def print_report(report: Any) -> None:
    data = report.to_dict()
    table(
        "Partitions",
        ["partition", "runs in", "nodes", "ops", "why in PyTorch"],
        [
            (
                p["name"],
                data["backend"] if p["accelerated"] else "PyTorch",
                p["size"],
                ", ".join(f"{op.removeprefix('aten.')}×{n}" for op, n in sorted(p["ops"].items())),
                p["reason"] or "",
            )
            for p in data["partitions"]
        ],
    )
    if data["fallback_ops"]:
        table(
            "Ops running in PyTorch",
            ["op", "count", "reason"],
            [
                (op, count, data["fallback_reasons"].get(op, ""))
                for op, count in sorted(data["fallback_ops"].items(), key=lambda kv: -kv[1])
            ],
        )
    if data["timings"]:
        console().print(
            "phases: " + ", ".join(f"{name} {seconds(t)}" for name, t in data["timings"].items())
        )


@click.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, path_type=Path), help="Compile spec (YAML).")
@click.option("--backend", type=BackendChoice(), help="Overrides the spec.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16", "int8"]), help="Overrides the spec.")
@click.option("--device", help="cpu, cuda[:N] or dla[:N]; overrides the spec.")
@click.option("--require-full-compilation", is_flag=True, help="Fail if any op would run in PyTorch.")
@click.option("--min-block-size", type=int, help="Smallest engine partition, in compute nodes.")
@click.option("--torch-executed-op", "torch_executed_ops", multiple=True, help="Keep this op in PyTorch (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print the partition table and stop.")
@click.option("--validate/--no-validate", default=True, show_default=True, help="Compare with the model on generated inputs.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Default: MODEL.engine.pt2")
@json_option
def compile_command(
    model: Path,
    spec_file: Path | None,
    backend: str | None,
    precision: str | None,
    device: str | None,
    require_full_compilation: bool,
    min_block_size: int | None,
    torch_executed_ops: tuple[str, ...],
    dry_run: bool,
    validate: bool,
    output: Path | None,
    as_json: bool,
) -> None:
    """Compile MODEL (a torch.export .pt2 file) into an engine package on this machine."""
    import compiler

    spec = _spec(
        spec_file,
        {"backend": backend, "precision": precision, "device": device},
        {
            "require_full_compilation": require_full_compilation,
            "min_block_size": min_block_size,
            "torch_executed_ops": list(torch_executed_ops) or None,
        },
    )
    program = compiler.load_program(model)
    if dry_run:
        report = compiler.plan(program, spec)
        if as_json:
            print_json(report.to_dict())
        else:
            print_report(report)
        return
    output = output or model.with_name(model.name.removesuffix(".pt2") + ".engine.pt2")
    status = None if as_json else console(stderr=True).status("compiling")
    if status is not None:
        status.start()
    try:
        compiled = compiler.compile(
            program, spec, progress=(lambda p: status.update(f"compiling: {p}")) if status else None
        )
        if status is not None:
            status.update("saving")
        compiler.save(compiled, output)
        results = []
        if validate:
            if status is not None:
                status.update("validating")
            results = compiler.validate(compiled, program, spec)
    finally:
        if status is not None:
            status.stop()
    passed = all(r.passed for r in results)
    if as_json:
        print_json(
            {
                "output": str(output),
                "report": compiled.report.to_dict(),
                "validation": [r.to_dict() for r in results],
                "passed": passed,
            }
        )
    else:
        print_report(compiled.report)
        from orchestrator.cli.results import PERFORMANCE, performance_value

        accuracy = [r for r in results if r.output != PERFORMANCE]
        performance = [r for r in results if r.output == PERFORMANCE]
        if accuracy:
            table(
                "Validation",
                ["output", "metric", "value", "threshold", "passed"],
                [(r.output, r.metric, f"{r.value:.3g}", f"{r.threshold:.3g}" if r.threshold is not None else "-", "yes" if r.passed else "NO") for r in accuracy],
            )
        if performance:
            table("Performance", ["metric", "value"], [(r.metric, performance_value(r.metric, r.value)) for r in performance])
        console().print(styled("engine package: ") + styled(str(output), "bold"))
    if not passed:
        raise click.exceptions.Exit(1)
