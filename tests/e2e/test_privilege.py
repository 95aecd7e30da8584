"""Privilege, as a person running `sudo tcpsh` meets it: files written by `capture` and `receive --to`
belong to the user who ran sudo (SUDO_UID and SUDO_GID as sudo sets them, for the unprivileged user
nobody), the shell keeps only the capabilities its teardown needs and still removes its lab, and a bad
path is one clear line with nothing created."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest

from tcpsh import privilege
from tests.e2e.conftest import KERNEL, Shell, assert_lab_gone, run_tcpsh, tcpsh_argv

pytestmark = pytest.mark.root

NOBODY = 65534  # uid of nobody and gid of nogroup


@pytest.fixture
def sudo_env(tcpsh_env: dict[str, str]) -> dict[str, str]:
    return {**tcpsh_env, "SUDO_UID": str(NOBODY), "SUDO_GID": str(NOBODY)}


@pytest.fixture
def place() -> Iterator[Path]:
    """/tmp/X (root's, 0755) with `mine/` (nobody's) and `root/` (root's, 0755): pytest's own tmp_path
    lies under a directory only root may enter."""
    base = Path(tempfile.mkdtemp(prefix="tcpsh-e2e-privilege-"))
    try:
        base.chmod(0o755)
        for name, uid in (("mine", NOBODY), ("root", 0)):
            (base / name).mkdir(mode=0o755)
            os.chown(base / name, uid, uid)
        yield base
    finally:
        shutil.rmtree(base)


def tcp_payloads(pcap: Path) -> list[bytes]:
    with pcap.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == 101  # LINKTYPE_RAW: bare IPv4 datagrams
        return [dpkt.ip.IP(buf).data.data for _, buf in reader if dpkt.ip.IP(buf).p == 6]


def test_files_belong_to_the_user_who_ran_sudo(sudo_env: dict[str, str], place: Path) -> None:
    mine = place / "mine"
    run = run_tcpsh(
        [
            "-c",
            f"capture start {mine}/run.pcap; open {KERNEL}:7; send c1 'hello\\r\\n'; "
            f"receive c1 --to {mine}/got.bin; capture stop; close c1",
        ],
        sudo_env,
    )
    assert run.returncode == 0, run
    assert f"c1: 7 bytes written to {mine}/got.bin" in run.lines, run
    for name in ("run.pcap", "got.bin"):
        st = (mine / name).stat()
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), name
    assert (mine / "got.bin").read_bytes() == b"hello\r\n"
    payloads = tcp_payloads(mine / "run.pcap")
    assert payloads.count(b"hello\r\n") == 2, "sent, and echoed back"
    assert_lab_gone(run.pid)


def test_a_bad_path_is_one_line_and_creates_nothing(sudo_env: dict[str, str], place: Path) -> None:
    run = run_tcpsh(["-c", f"open {KERNEL}:7; capture start {place}/nowhere/y.pcap; close c1"], sudo_env)
    assert run.returncode == 1, run
    told = [ln for ln in run.lines if "capture" in ln or "pcap" in ln]
    assert told == [f"-c:2: capture: cannot write {place}/nowhere/y.pcap: no such directory"], run
    assert "Traceback" not in run.output
    assert sorted(p.name for p in place.iterdir()) == ["mine", "root"]
    assert_lab_gone(run.pid)


def test_bad_paths_at_the_prompt(sudo_env: dict[str, str], place: Path) -> None:
    """Each bad path is one line; the shell and the connection carry on, and no data is lost."""
    (place / "mine" / "link").symlink_to(place / "root")
    sh = Shell(sudo_env)
    try:
        sh.wait_started()
        sh.ask(f"open {KERNEL}:7", r"c1 ESTABLISHED")
        queued, arrived = r"c1: queued 4 bytes", r"data arrived on c1 \(4 bytes\)"  # in either order
        sh.ask("send c1 ping", rf"(?s)({queued}.*{arrived}|{arrived}.*{queued})")
        for line, answer in (
            (
                f"receive c1 --to {place}/nowhere/x",
                f"receive: cannot write {place}/nowhere/x: no such directory",
            ),
            (f"receive c1 --to {place}/mine", f"receive: cannot write {place}/mine: it is a directory"),
            (
                f"receive c1 --to {place}/mine/link",
                f"receive: cannot write {place}/mine/link: it is a symbolic link; give the file itself",
            ),
            (
                f"capture start {place}/root/x.pcap",
                f"capture: cannot write {place}/root/x.pcap: permission denied for nobody",
            ),
            (f"send c1 --file {place}/absent", f"send: cannot read {place}/absent: no such file"),
        ):
            sh.ask(line, re.escape(answer))
        sh.ask("receive c1", r"c1: 4 bytes: ping")
        sh.ask("quit", r"c1 closed|c1 aborted")
        assert sh.wait_exit() == 0
    finally:
        sh.close()
    assert "Traceback" not in sh.text()
    assert sorted(p.name for p in (place / "mine").iterdir()) == ["link"]
    assert list((place / "root").iterdir()) == []
    assert_lab_gone(sh.pid)


def thread_status(pid: int) -> list[dict[str, str]]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with (task / "status").open() as f:
            found.append(dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line))
    return found


def test_only_the_capabilities_the_teardown_needs(sudo_env: dict[str, str]) -> None:
    """While the shell runs, every one of its threads is uid 0 with the kept capabilities and no more;
    a tcpdump started in its lab from outside is still stopped, and the lab removed, at exit."""
    proc = subprocess.Popen(
        [*tcpsh_argv(), "-c", f"open {KERNEL}:7; echo ready; sleep 30"],
        env=sudo_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tcpdump = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "ready":
                break
        else:
            pytest.fail(f"tcpsh ended before 'ready' (status {proc.wait()})")
        with open("/proc/self/status") as f:
            bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
        kept = {**privilege.KEPT, **privilege.SWITCHING}
        mask = sum(1 << cap for cap in kept) & bounding
        threads = thread_status(proc.pid)
        assert len(threads) >= 3, "the main thread and the stack's receive and timer threads"
        for status in threads:
            assert status["Uid"].split()[:2] == ["0", "0"], status["Name"]
            for name in ("CapBnd", "CapPrm", "CapEff"):
                assert int(status[name], 16) == mask, (status["Name"], name, status[name])
        stack_ns = f"tcpsh-{proc.pid}-0-s"
        tcpdump = subprocess.Popen(
            ["ip", "netns", "exec", stack_ns, "tcpdump", "-ni", "any", "-w", "/dev/null"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(1.0)  # tcpdump in its namespace, with every capability
        assert tcpdump.poll() is None
        proc.terminate()  # SIGTERM: the lab removes itself, as on exit
        proc.wait(timeout=20)
        tcpdump.wait(timeout=10)  # stopped by the teardown
    finally:
        for p in (proc, tcpdump):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert_lab_gone(proc.pid)
