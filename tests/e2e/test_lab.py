"""The lab's life cycle seen from outside: `--lab-clean`, a run killed with SIGKILL, and a run without
the privileges the lab needs."""

from __future__ import annotations

import shutil
import signal

import pexpect
import pytest

from tests.e2e.conftest import (
    COLS,
    KERNEL,
    ROWS,
    Shell,
    assert_lab_gone,
    lab_namespaces,
    lab_processes,
    run_tcpsh,
    strip_ansi,
    tcpsh_argv,
)

pytestmark = pytest.mark.root

# An unprivileged user: uid/gid 65534, no groups, and no capability but CAP_DAC_READ_SEARCH, which only
# lets it reach the interpreter where that lives under a private directory (/root/.pyenv here). It has
# neither CAP_NET_RAW nor CAP_NET_ADMIN, which is what tcpsh checks for.
UNPRIVILEGED = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+dac_read_search",
    "--ambient-caps=+dac_read_search",
]
NEEDS_ROOT = "tcpsh: needs root"


def test_lab_clean_exits_0_and_leaves_a_running_lab_alone(tcpsh_env: dict[str, str]) -> None:
    sh = Shell(tcpsh_env)
    try:
        sh.wait_started()
        running = lab_namespaces(sh.pid)
        assert len(running) == 2

        run = run_tcpsh(["--lab-clean"], tcpsh_env)
        assert run.returncode == 0, run
        assert run.lines and (
            run.lines[-1] == "nothing to clean" or run.lines[-1].endswith("leftovers removed")
        ), run
        assert f"tcpsh-{sh.pid}-" not in run.output, f"--lab-clean touched a running shell's lab:\n{run}"
        assert_lab_gone(run.pid)

        # The running shell's lab is whole: its namespaces are there and a connection still opens.
        assert lab_namespaces(sh.pid) == running
        sh.ask(f"open {KERNEL}:7", r"c1 ESTABLISHED ")
        sh.prompt()
        sh.child.sendeof()
        assert sh.wait_exit() == 0, sh.text()
    finally:
        sh.close()
    assert_lab_gone(sh.pid)


def test_lab_clean_removes_what_a_killed_run_left(tcpsh_env: dict[str, str]) -> None:
    sh = Shell(tcpsh_env)
    try:
        sh.wait_started()
        pid = sh.pid
        left = lab_namespaces(pid)
        assert len(left) == 2

        sh.child.kill(signal.SIGKILL)  # no handler runs: the lab stays behind
        sh.child.expect(pexpect.EOF, timeout=10)
        sh.child.close()  # reaped, so the pid is no longer alive
        assert sh.child.signalstatus == signal.SIGKILL
        assert lab_namespaces(pid) == left, "SIGKILL left the lab's namespaces behind"

        run = run_tcpsh(["--lab-clean"], tcpsh_env)
        assert run.returncode == 0, run
        for ns in left:
            assert f"netns {ns}" in run.output, f"--lab-clean did not say it removed {ns}:\n{run}"
        assert run.lines[-1].endswith("leftovers removed"), run
        assert lab_namespaces(pid) == [], run
        assert lab_processes(pid) == [], run

        again = run_tcpsh(["--lab-clean"], tcpsh_env)
        assert again.returncode == 0, again
        assert f"tcpsh-{pid}-" not in again.output, again
    finally:
        sh.close()


def need_setpriv() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")


@pytest.mark.parametrize("args", [[], ["--lab-clean"], ["-c", "status"]], ids=["lab", "lab-clean", "-c"])
def test_without_root_it_says_so_and_exits_1(args: list[str], tcpsh_env: dict[str, str]) -> None:
    need_setpriv()
    env = dict(tcpsh_env, HOME="/nonexistent", XDG_STATE_HOME="/nonexistent")
    run = run_tcpsh(args, env, prefix=UNPRIVILEGED)
    assert run.returncode == 1, run
    assert run.output.startswith(NEEDS_ROOT), run
    assert "sudo" in run.output, run
    assert "Traceback" not in run.output, run
    assert_lab_gone(run.pid)


def test_without_root_at_a_terminal_it_is_one_line(tcpsh_env: dict[str, str]) -> None:
    need_setpriv()
    argv = [*UNPRIVILEGED, *tcpsh_argv()]
    env = dict(tcpsh_env, HOME="/nonexistent", XDG_STATE_HOME="/nonexistent")
    child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(ROWS, COLS), encoding="utf-8", timeout=20)
    child.expect(pexpect.EOF)
    child.close()
    lines = [ln for ln in strip_ansi(child.before).splitlines() if ln.strip()]
    assert child.exitstatus == 1, child.before
    assert len(lines) == 1 and lines[0].startswith(NEEDS_ROOT), lines


def test_without_root_through_a_pipe_it_is_one_line(tcpsh_env: dict[str, str]) -> None:
    need_setpriv()
    env = dict(tcpsh_env, HOME="/nonexistent", XDG_STATE_HOME="/nonexistent")
    run = run_tcpsh([], env, prefix=UNPRIVILEGED)
    assert run.returncode == 1, run
    assert len(run.lines) == 1, run
