"""The demo's live panel: a rich Live that leaves its last frame as ordinary output.

rich's ``Live`` ends its final frame without a newline when the console is not a terminal
(``make demo | tee log``, CI), so the next ``console.rule`` lands on the table's last
line. :func:`live_panel` runs a transient Live and then prints the last frame with
``console.print``, which always ends the line, on a terminal or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console, RenderableType
from rich.live import Live


@contextlib.contextmanager
def live_panel(console: Console, render: Callable[[], RenderableType]) -> Iterator[Live]:
    """A Live showing ``render()`` (call ``update(render())`` on it); on exit the last
    frame is printed as ordinary output."""
    panel = Live(render(), console=console, refresh_per_second=4, transient=True)
    with panel:
        yield panel
    console.print(render())
