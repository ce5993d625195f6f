"""Progress of long commands on stderr: one rich bar per piece of work, as ``catalog import`` shows it.

Library functions take a ``Progress`` callback (``progress(done, total)``, ``total`` None while unknown) and
know nothing of the display; the command line turns it into a bar with ``bar``. On a terminal the bar moves; when
stderr is a file or a pipe rich draws it once, finished, as one line on stderr, so stdout (``--format json``,
paths) stays exactly what scripts parse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

Progress = Callable[[int, int | None], None]
"""``progress(done, total)``: how much of the work is done, out of ``total`` (None while unknown)."""


def _quiet(done: int, total: int | None) -> None:
    """A ``Progress`` that shows nothing."""


@contextmanager
def bar(console: Console | None, description: str, total: int | None = None) -> Iterator[Progress]:
    """A ``Progress`` drawing one bar labelled ``description`` on ``console`` (None: nothing is shown).

    Examples
    --------
    >>> with bar(None, "counting", 3) as progress:
    ...     for i in range(3):
    ...         progress(i + 1, 3)
    """
    if console is None:
        yield _quiet
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with RichProgress(*columns, console=console, transient=False) as shown:
        task = shown.add_task(description, total=total)

        def progress(done: int, total: int | None) -> None:
            shown.update(task, completed=done, total=total)

        yield progress
