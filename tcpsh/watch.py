"""`watch`: a full-screen view of its own (rich's Live cannot share the screen with a line being typed).

A prompt_toolkit Application shows the rich-rendered `views.watch_view`, refreshed four times a second,
until q, Esc or Ctrl-C; `a` switches between relative and absolute sequence numbers. The view is
rendered by a function of (relative, width): in this process, or by a daemon the shell is attached to.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Sequence

from prompt_toolkit.application import Application
from prompt_toolkit.formatted_text import ANSI
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import Layout, Window
from prompt_toolkit.layout.controls import FormattedTextControl
from rich.console import Console

from stack.tcp import TcbStatus
from tcpsh import views

Snapshot = Callable[[], Sequence[tuple[str, TcbStatus]]]
Renderer = Callable[[bool, int], str]  # (relative, width) -> the view as text with ANSI colours


def render(snapshot: Snapshot, *, relative: bool, width: int, color: bool) -> str:
    """The view as text with ANSI colours (or none), at the given width."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, no_color=not color, highlight=False)
    console.print(views.watch_view(snapshot(), relative=relative, width=width))
    return buf.getvalue()


def run_watch(renderer: Renderer) -> None:
    state = {"relative": True}

    def text() -> ANSI:
        width = max(40, shutil.get_terminal_size((100, 30)).columns - 1)
        return ANSI(renderer(state["relative"], width))

    keys = KeyBindings()

    @keys.add("q")
    @keys.add("escape")
    @keys.add("c-c")
    def _leave(event: KeyPressEvent) -> None:
        event.app.exit()

    @keys.add("a")
    def _toggle(event: KeyPressEvent) -> None:
        state["relative"] = not state["relative"]

    app: Application[None] = Application(
        layout=Layout(Window(FormattedTextControl(text), wrap_lines=False)),
        key_bindings=keys,
        full_screen=True,
        refresh_interval=0.25,
    )
    app.run()
