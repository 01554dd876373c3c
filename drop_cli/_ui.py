"""Terminal output: progress and logs on stderr, so that stdout can carry one JSON object. Under
torchrun only rank 0 reports (info lines); warnings and errors come from every process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ._distributed import is_main_process

console = Console(stderr=True, highlight=False, soft_wrap=True)


class _RateColumn(ProgressColumn):
    """Items per second."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} {self.unit}/s" if speed else f"-- {self.unit}/s", style="progress.data.speed")


@contextmanager
def progress_bar(description: str, total: int, unit: str = "img", enabled: bool = True) -> Iterator:
    """A rich bar with count, rate and ETA; yields ``advance(n)``."""
    if not enabled:
        yield lambda n=1: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def error(message: str, hint: str | None = None) -> None:
    """One line on stderr: what is wrong, then (dimmed) what to do."""
    console.print(
        f"[bold red]error:[/] {escape(message)}" + (f" [dim]{escape(hint)}[/]" if hint else ""), soft_wrap=True
    )


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {message}")


def info(message: str) -> None:
    if is_main_process():
        console.print(message)
