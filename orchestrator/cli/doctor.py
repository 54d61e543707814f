"""``orchestrate doctor``: check broker, database, artifact store, backends and GPU from here."""

from __future__ import annotations

import click

from orchestrator.cli._common import console, json_option, print_json, styled

_VERDICT_STYLES = {"ok": "green", "warn": "yellow", "fail": "red"}


@click.command("doctor")
@click.option(
    "--no-machine",
    "skip_machine",
    is_flag=True,
    help="Skip the backend and GPU checks (a control-plane host that never builds).",
)
@json_option
def doctor_command(skip_machine: bool, as_json: bool) -> None:
    """Check that this machine can reach the farm and build engines; say how to fix what is not.

    Exits 3 when the broker, database or artifact store fails its check, 1 when only this
    machine's backends or GPU detection do, and 0 otherwise (warnings included).
    """
    from rich.text import Text

    from orchestrator.doctor import exit_code, run_checks
    from orchestrator.settings import get_settings

    checks = run_checks(get_settings(), machine=not skip_machine)
    code = exit_code(checks)
    if as_json:
        print_json({"ok": code == 0, "exit_code": code, "checks": [c.to_dict() for c in checks]})
    else:
        out = console()
        for check in checks:
            line = Text.assemble(
                styled(f"{check.verdict:<4}", _VERDICT_STYLES.get(check.verdict, "")),
                "  ",
                styled(f"{check.name:<8}", "bold"),
                " ",
                styled(check.detail),
            )
            out.print(line)
            if check.fix and check.verdict != "ok":
                out.print(Text.assemble("              fix: ", styled(check.fix)))
        failed = [c.name for c in checks if c.failed]
        out.print(styled(f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed
                         else "all checks passed", "red" if failed else "green"))
    if code:
        raise click.exceptions.Exit(code)
