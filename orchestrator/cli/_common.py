"""What every command shares: the lazily opened farm, output helpers, error-to-exit-code mapping."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from orchestrator.untrusted import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from orchestrator.client import Client
    from orchestrator.remote import DirectFarm, RemoteFarm
    from orchestrator.services import Farm

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  a job failed (submit --wait, wait) or an unexpected error
  2  bad usage or input: missing/unsafe model file, bad spec, unknown id or target
  3  infrastructure unreachable: database, broker or artifact store
  4  timed out waiting for a job
  5  the job was cancelled
"""


@dataclass
class CliState:
    """Per-invocation state; the farm (and its settings) is opened only when a command needs it."""

    farm: Farm | None = None
    _client: Client | None = field(default=None, repr=False)

    def get_farm(self) -> Farm:
        if self.farm is None:
            from orchestrator.services import Farm

            self.farm = Farm()
        return self.farm

    def remote(self) -> RemoteFarm | None:
        """The API server when ORCHESTRATE_API_URL (and ORCHESTRATE_TOKEN) are set, else None."""
        from orchestrator.remote import from_env

        return from_env()

    def farm_api(self) -> DirectFarm | RemoteFarm:
        """Job queries and control, through the server when one is configured, else direct."""
        from orchestrator.remote import DirectFarm

        return self.remote() or DirectFarm(self.get_farm())

    def client(self) -> Client:
        if self._client is None:
            from orchestrator.client import Client

            self._client = Client(farm=self.get_farm())
        return self._client


def state() -> CliState:
    ctx = click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


class BackendChoice(click.Choice):
    """``--backend``: the names in the compiler's backend registry, read when first needed so
    that commands which never look at a backend do not import the compiler."""

    def __init__(self) -> None:
        super().__init__([])

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        from compiler.backends import BACKENDS

        return list(BACKENDS)

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        pass


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    # Resolved per call so Click's test runner (which swaps sys.stdout) captures the output.
    stream = sys.stderr if stderr else sys.stdout
    # Piped output has no width; 80 columns would fold ids that people copy from the table.
    width = None if stream.isatty() else 160
    return Console(file=stream, highlight=False, soft_wrap=False, width=width)


def short(value: str | None, width: int = 12) -> str:
    """Ids are 32 hex digits; 12 are unique in practice and every command accepts a prefix."""
    return "-" if value is None else value[:width]


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def styled(text: str, style: str = "") -> Text:
    """A table cell or line part in ``style``; ``text`` is shown as it is (no markup), with
    control characters escaped."""
    from rich.text import Text

    return Text(printable(text), style=style)


def _cell(value: Any) -> Text:
    # Every cell is plain text: names and messages come from other people, and rich markup or
    # terminal escapes in them must show as typed, not act on the reader's terminal.
    from rich.text import Text

    if isinstance(value, Text):
        return value
    return styled("-" if value is None or value == "" else str(value))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table

    grid = Table(title=title, show_lines=False, header_style="bold")
    for index, column in enumerate(columns):
        # The first column is an id or a name: never wrapped, so it can be copied whole.
        grid.add_column(column, overflow="fold", no_wrap=index == 0)
    for row in rows:
        grid.add_row(*(_cell(cell) for cell in row))
    console().print(grid)


def key_values(title: str, items: Iterable[tuple[str, Any]]) -> None:
    from rich.table import Table

    grid = Table(title=title, show_header=False, box=None, pad_edge=False)
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in items:
        grid.add_row(key, _cell(value))
    console().print(grid)


STATE_STYLES = {
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def styled_state(value: str) -> Text:
    return styled(value, STATE_STYLES.get(value, ""))


def warn(message: str) -> None:
    from rich.text import Text

    console(stderr=True).print(Text.assemble(("warning:", "yellow"), " ", printable(message)))


def fail(message: str, code: int) -> click.exceptions.Exit:
    """Print ``message`` as an error and return the exit to raise."""
    click.echo(f"error: {printable(message, keep_newlines=True)}", err=True)
    return click.exceptions.Exit(code)
