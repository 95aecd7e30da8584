"""The interactive prompt: completion from the command table, history, news printed above the line."""

from __future__ import annotations

from collections.abc import Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

from stack.runtime import StackError
from stack.tcp import State
from tcpsh.commands import BY_NAME, COMMANDS, CommandError
from tcpsh.session import Quit, Session, history_path


class TableCompleter(Completer):
    """Completes command names, options, connection ids and state names, all from the command table."""

    def __init__(self, session: Session) -> None:
        self.session = session

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
        positional = [w for w in words[1:position] if not w.startswith("--")]
        n = len(positional)
        if n < len(cmd.args):
            arg = cmd.args[n]
            if arg.kind == "conn":
                for cid, st in self.session.stack.connections():
                    if cid.startswith(word):
                        yield Completion(cid, -len(word), display_meta=str(st.state))
            elif arg.kind == "state":
                for s in State:
                    if s.value.startswith(word.upper()):
                        yield Completion(s.value, -len(word))
            elif arg.kind == "word" and cmd.name == "help":
                for c in COMMANDS:
                    if c.name.startswith(word):
                        yield Completion(c.name, -len(word), display_meta=c.summary)


def interact(session: Session) -> None:
    """Read, run and report lines until quit or Ctrl-D. Bad input never ends the shell."""
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        history: FileHistory | InMemoryHistory = FileHistory(str(path))
    except OSError:
        history = InMemoryHistory()
    prompt: PromptSession[str] = PromptSession(
        history=history, completer=TableCompleter(session), complete_while_typing=False
    )
    session.out("type 'help' for the commands, Ctrl-D or 'quit' to leave")
    with patch_stdout(raw=True):
        while True:
            try:
                line = prompt.prompt("tcpsh> ")
            except KeyboardInterrupt:
                continue  # Ctrl-C clears the line
            except EOFError:
                return
            try:
                session.execute(line)
            except Quit:
                return
            except (CommandError, StackError) as e:
                session.out(str(e), style="red")
            except KeyboardInterrupt:
                session.out("interrupted", style="red")
            except Exception as e:  # a bug in a handler must not end the shell
                session.out(f"internal error: {e!r}", style="red")
