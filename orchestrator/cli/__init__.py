"""``orchestrate``: the command line of the build farm (entry point ``orchestrator.cli:main``).

Each command lives in its own module and is imported only when it runs (or when help lists
it), and settings are read only when a command needs the farm, so ``orchestrate --help`` and
usage errors answer at once and never touch a database or broker.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from orchestrator.cli._common import EXIT_CODES_HELP, CliState, fail

# name -> (module, attribute). The order is the order of `orchestrate --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "submit": ("orchestrator.cli.submit", "submit_command"),
    "status": ("orchestrator.cli.status", "status_command"),
    "wait": ("orchestrator.cli.wait", "wait_command"),
    "cancel": ("orchestrator.cli.cancel", "cancel_command"),
    "retry": ("orchestrator.cli.retry", "retry_command"),
    "jobs": ("orchestrator.cli.jobs", "jobs_command"),
    "artifacts": ("orchestrator.cli.artifacts", "artifacts_group"),
    "results": ("orchestrator.cli.results", "results_command"),
    "workers": ("orchestrator.cli.workers", "workers_command"),
    "worker": ("orchestrator.cli.worker", "worker_command"),
    "worker-alive": ("orchestrator.cli.worker_alive", "worker_alive_command"),
    "queues": ("orchestrator.cli.queues", "queues_command"),
    "doctor": ("orchestrator.cli.doctor", "doctor_command"),
    "serve": ("orchestrator.cli.serve", "serve_command"),
    "compare": ("orchestrator.cli.compare", "compare_command"),
    "tokens": ("orchestrator.cli.tokens", "tokens_group"),
    "compile": ("orchestrator.cli.compile", "compile_command"),
    "db": ("orchestrator.cli.db", "db"),
    "sample": ("orchestrator.cli.sample", "sample_command"),
    "ops": ("orchestrator.cli.ops", "ops_command"),
}


def _exit_code_for(exc: BaseException) -> tuple[int, str] | None:
    """Map an exception to (exit code, message) for the errors a user can meet; else None."""
    from orchestrator.cli.exit_codes import (
        EXIT_JOB_FAILED,
        EXIT_UNREACHABLE,
        EXIT_USAGE,
        exit_code_of,
    )
    from orchestrator.errors import FarmError
    from orchestrator.settings import SettingsError, redact, scrub

    if isinstance(exc, FarmError):
        return exit_code_of(exc), str(exc)
    if isinstance(exc, SettingsError):
        return EXIT_USAGE, str(exc)
    # Only look at libraries that are already loaded: an error cannot come from one that is not.
    db = sys.modules.get("orchestrator.db")
    if db is not None and isinstance(exc, db.DatabaseURLError):
        return EXIT_USAGE, str(exc)
    if db is not None and isinstance(exc, db.SchemaOutOfDateError):
        return EXIT_UNREACHABLE, str(exc)
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if db is not None and sa_exc is not None and (
        isinstance(exc, sa_exc.OperationalError)
        or (isinstance(exc, sa_exc.ProgrammingError) and db.is_missing_schema(exc))
    ):
        return EXIT_UNREACHABLE, db.describe_error(_configured("database_url"), exc)
    kombu_exc = sys.modules.get("kombu.exceptions")
    if kombu_exc is not None and isinstance(exc, kombu_exc.OperationalError):
        broker = _configured("broker_url")
        return EXIT_UNREACHABLE, f"the broker is unreachable: {scrub(redact(str(exc)), broker)}"
    store = sys.modules.get("orchestrator.store")
    if store is not None and isinstance(exc, store.ArtifactStoreUnavailableError):
        return EXIT_UNREACHABLE, str(exc)
    if store is not None and isinstance(exc, store.ArtifactStoreError):
        return EXIT_JOB_FAILED, str(exc)
    compiler_errors = sys.modules.get("compiler.errors")
    if compiler_errors is not None and isinstance(exc, compiler_errors.CompilerError):
        # a bad spec or model is bad usage; a build that failed is not (exit_codes says which)
        return exit_code_of(exc), f"{exc.kind}: {exc}"
    return None


def _configured(key: str) -> str:
    """A URL from the settings, for masking its password in a message ("" when unreadable)."""
    from orchestrator.settings import SettingsError, get_settings

    try:
        return str(getattr(get_settings(), key))
    except SettingsError:
        return ""


class OrchestrateGroup(click.Group):
    """Loads commands on demand and turns known errors into one line and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attribute = entry
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        command = getattr(module, attribute)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as exc:
            mapped = _exit_code_for(exc)
            if mapped is None:
                raise
            code, message = mapped
            raise fail(message, code) from None


@click.group(
    cls=OrchestrateGroup,
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="orchestrate", message="orchestrate %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Build inference engines from PyTorch models on a farm of matching machines.

    Settings come from ORCHESTRATE_* environment variables or orchestrate.toml; with none set,
    everything runs embedded under ORCHESTRATE_HOME (no servers needed).
    """
    if not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()
