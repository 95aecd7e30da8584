"""The interactive prompt: completion from the command table, history, news printed above the line."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import sys
import termios
from collections.abc import Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.input.typeahead import get_typeahead, store_typeahead
from prompt_toolkit.input.vt100_parser import Vt100Parser
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.keys import Keys
from prompt_toolkit.patch_stdout import patch_stdout

from stack.runtime import StackError
from stack.tcp import State
from stack.tcp.congestion import CONGESTION_CONTROLS
from tcpsh import privilege
from tcpsh.commands import BY_NAME, COMMANDS, Command, CommandError
from tcpsh.session import Driver, Quit, history_path


class TableCompleter(Completer):
    """Completes command names, options, connection ids and state names, all from the command table."""

    def __init__(self, session: Driver) -> None:
        self.session = session
        self.paths = PathCompleter(expanduser=True)

    def _paths(self, word: str, complete_event: CompleteEvent) -> Iterable[Completion]:
        yield from self.paths.get_completions(Document(word, len(word)), complete_event)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        words = text.split()
        word = document.get_word_before_cursor(WORD=True)
        if len(words) == 0 or (len(words) == 1 and not text.endswith(" ")):
            for c in COMMANDS:
                if c.name.startswith(word):
                    yield Completion(c.name, -len(word), display_meta=c.summary)
            return
        cmd = BY_NAME.get(words[0])
        if cmd is None:
            return
        if word.startswith("-"):
            for o in cmd.opts:
                if o.flag.startswith(word):
                    yield Completion(o.flag, -len(word), display_meta=o.help)
            return
        position = len(words) - (0 if text.endswith(" ") else 1)
        before = words[position - 1] if position >= 1 else ""
        opt = next((o for o in cmd.opts if o.flag == before), None)
        if opt is not None:
            if opt.kind == "path":
                yield from self._paths(word, complete_event)
            elif opt.kind == "host":
                yield from self._hosts(word)
            elif opt.kind == "cc":
                for name in CONGESTION_CONTROLS:
                    if name.startswith(word):
                        yield Completion(name, -len(word), display_meta=opt.help)
            return
        positional = [
            w
            for i, w in enumerate(words[1:position], 1)
            if not w.startswith("--") and not _takes_value(cmd, words[i - 1])
        ]
        n = len(positional)
        if n < len(cmd.args) or (cmd.args and cmd.args[-1].rest):
            arg = cmd.args[min(n, len(cmd.args) - 1)]
            if arg.kind in ("conn", "conns"):
                for cid, state in self.session.connection_states():
                    if cid.startswith(word):
                        yield Completion(cid, -len(word), display_meta=state)
                if cmd.name == "set" and "default".startswith(word):
                    yield Completion("default", -len(word), display_meta="connections opened from now on")
            elif arg.kind == "state":
                for s in State:
                    if s.value.startswith(word.upper()):
                        yield Completion(s.value, -len(word))
            elif arg.kind == "word" and cmd.name == "help":
                for c in COMMANDS:
                    if c.name.startswith(word):
                        yield Completion(c.name, -len(word), display_meta=c.summary)
            elif arg.kind == "choice":
                for choice in arg.choices:
                    if choice.startswith(word):
                        yield Completion(choice, -len(word), display_meta=arg.help)
            elif arg.kind == "path":
                yield from self._paths(word, complete_event)
            elif arg.kind == "hostport":
                yield from self._hosts(word)

    def _hosts(self, word: str) -> Iterable[Completion]:
        """The lab's services after `open`: HOST:PORT with the service's name."""
        for target, name in self.session.hosts:
            if target.startswith(word):
                yield Completion(target, -len(word), display_meta=name)


def _takes_value(cmd: Command, word: str) -> bool:
    return any(o.flag == word and o.kind != "flag" for o in cmd.opts)


class UserHistory(FileHistory):
    """The history file, read and written as the invoking user (tcpsh.privilege): under sudo it and
    the folders made for it are theirs. History is a convenience: a file that cannot be read or
    written leaves the shell without it, not stopped."""

    def load_history_strings(self) -> Iterable[str]:
        try:
            with privilege.as_invoker():
                return list(super().load_history_strings())
        except OSError:
            return []

    def store_string(self, string: str) -> None:
        with contextlib.suppress(OSError), privilege.as_invoker():
            super().store_string(string)


def _pending_terminal_input() -> str:
    """What was typed but not yet read: bytes that reached the terminal while it was still in raw mode
    after Enter (a Ctrl-C there is a byte, not a signal)."""
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd):
            return ""
        count = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        return os.read(fd, count).decode(errors="replace") if count > 0 else ""
    except (OSError, ValueError):
        return ""


def interrupted_early(prompt: PromptSession[str]) -> None:
    """A Ctrl-C typed right after Enter, before the terminal left raw mode, is a key (kept as type-ahead)
    or a byte still waiting in the terminal; it was meant for the command just entered: honour it now.
    Everything typed after it stays for the next prompt."""
    keys = get_typeahead(prompt.input)
    pending = _pending_terminal_input()
    if pending:
        parser = Vt100Parser(keys.append)
        parser.feed(pending)
        parser.flush()
    for i, k in enumerate(keys):
        if k.key == Keys.ControlC:
            store_typeahead(prompt.input, keys[i + 1 :])
            raise KeyboardInterrupt
    store_typeahead(prompt.input, keys)


def interact(session: Driver, *, leaving: str = "Ctrl-D or 'quit' to leave") -> None:
    """Read, run and report lines until quit or Ctrl-D. Bad input never ends the shell."""
    path = history_path()
    try:
        privilege.make_dirs(path.parent)
        history: FileHistory | InMemoryHistory = UserHistory(str(path))
    except OSError:
        history = InMemoryHistory()
    late: list[str] = []  # a Ctrl-C that came after Enter, while the prompt was still closing

    def note_late(signum: int, frame: object) -> None:
        late.append("signal")

    keys = KeyBindings()

    @keys.add("c-c")
    def _ctrl_c(event: KeyPressEvent) -> None:
        if event.app.future is not None and event.app.future.done():
            late.append("key")  # Enter has already accepted the line: this is for the command
        else:
            event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

    prompt: PromptSession[str] = PromptSession(
        key_bindings=keys,
        history=history,
        completer=TableCompleter(session),
        complete_while_typing=False,
        auto_suggest=AutoSuggestFromHistory(),
        enable_history_search=False,  # Ctrl-R searches history (prompt_toolkit's default binding)
        bottom_toolbar=session.toolbar,
        refresh_interval=1.0,
    )
    session.prompt_started(prompt)
    session.out(f"type 'help' for the commands, {leaving}")
    with patch_stdout(raw=True):
        while session.alive:
            # While the prompt runs, Ctrl-C is a key (it clears the line). A SIGINT that comes as the
            # terminal leaves raw mode, just after Enter, is the user interrupting the command they
            # entered: it is noted here (so that neither prompt_toolkit nor asyncio swallows it) and
            # honoured before the command runs.
            late.clear()
            previous = signal.signal(signal.SIGINT, note_late)
            try:
                line = prompt.prompt("tcpsh> ", handle_sigint=False)
            except KeyboardInterrupt:
                signal.signal(signal.SIGINT, previous)
                continue  # Ctrl-C clears the line
            except EOFError:
                signal.signal(signal.SIGINT, previous)
                return
            try:
                # From here a SIGINT raises KeyboardInterrupt, inside this try: it interrupts the command.
                signal.signal(signal.SIGINT, previous)
                if late:
                    raise KeyboardInterrupt
                interrupted_early(prompt)
                session.execute(line)
            except Quit:
                return
            except (CommandError, StackError) as e:
                session.out(str(e), style="red")
            except KeyboardInterrupt:
                session.out("interrupted", style="red")
            except Exception as e:  # a bug in a handler must not end the shell
                session.out(f"internal error: {e!r}", style="red")
