"""tcpsh.privilege: paths given to commands checked with one clear line, files that belong to the user
who ran the shell through sudo (a throwaway user made here, with a group of its own), the switch to
that user's filesystem ids confined to one thread, and the capabilities kept after set-up (measured
in a child process, never in this one)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stack.link.capture import PcapWriter
from stack.runtime import StackError
from tcpsh import privilege
from tcpsh.commands import CommandError
from tcpsh.privilege import Output, read_bytes
from tcpsh.prompt import UserHistory
from tests.unit.test_impair_command import Shell

SUDO_VARS = ("SUDO_UID", "SUDO_GID", "SUDO_USER")


@pytest.fixture
def no_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SUDO_VARS:
        monkeypatch.delenv(name, raising=False)


def error_of(fn: object, *args: object) -> str:
    with pytest.raises(CommandError) as info:
        fn(*args)  # type: ignore[operator]
    return str(info.value)


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ---------------------------------------------------------------------- paths, without sudo


@pytest.mark.usefixtures("no_sudo")
class TestPaths:
    def test_a_missing_directory(self, tmp_path: Path) -> None:
        target = tmp_path / "nowhere" / "run.pcap"
        assert (
            error_of(Output, str(target), "capture") == f"capture: cannot write {target}: no such directory"
        )
        assert not (tmp_path / "nowhere").exists()

    def test_a_directory_given_as_the_file(self, tmp_path: Path) -> None:
        assert (
            error_of(Output, str(tmp_path), "receive")
            == f"receive: cannot write {tmp_path}: it is a directory"
        )
        assert "names a directory" in error_of(Output, f"{tmp_path}/new/", "receive")
        assert entries(tmp_path) == []

    def test_a_symbolic_link_is_refused_and_what_it_points_to_is_untouched(self, tmp_path: Path) -> None:
        real = tmp_path / "real"
        real.write_bytes(b"keep")
        (tmp_path / "link").symlink_to(real)
        (tmp_path / "dangling").symlink_to(tmp_path / "absent")
        for name in ("link", "dangling"):
            message = error_of(Output, str(tmp_path / name), "capture")
            assert (
                message
                == f"capture: cannot write {tmp_path / name}: it is a symbolic link; give the file itself"
            )
        assert real.read_bytes() == b"keep"
        assert not (tmp_path / "absent").exists()

    def test_a_path_through_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "f").write_bytes(b"")
        assert error_of(Output, str(tmp_path / "f" / "x"), "receive").endswith(
            "a part of the path is not a directory"
        )

    def test_a_fifo_is_not_a_regular_file_and_nothing_blocks(self, tmp_path: Path) -> None:
        os.mkfifo(tmp_path / "fifo")
        assert error_of(Output, str(tmp_path / "fifo"), "receive").endswith("it is not a regular file")
        assert error_of(read_bytes, str(tmp_path / "fifo"), "send").endswith("it is not a regular file")

    def test_no_name(self) -> None:
        assert error_of(Output, "", "receive") == "receive: cannot write '': no file name given"
        assert error_of(read_bytes, "", "send") == "send: cannot read '': no file name given"

    def test_reading(self, tmp_path: Path) -> None:
        (tmp_path / "data").write_bytes(b"\x00abc")
        (tmp_path / "alias").symlink_to(tmp_path / "data")
        assert read_bytes(str(tmp_path / "alias"), "send") == b"\x00abc"  # reading follows a link
        assert error_of(read_bytes, str(tmp_path / "absent"), "send") == (
            f"send: cannot read {tmp_path / 'absent'}: no such file"
        )
        assert error_of(read_bytes, str(tmp_path), "send").endswith("it is a directory")

    def test_an_existing_file_is_replaced_only_when_the_data_is_there(self, tmp_path: Path) -> None:
        target = tmp_path / "got"
        target.write_bytes(b"old contents")
        with pytest.raises(StackError), Output(str(target), "receive"):
            raise StackError("c1: timed out")
        assert target.read_bytes() == b"old contents"
        with Output(str(target), "receive") as out:
            out.replace(b"new")
        assert target.read_bytes() == b"new"

    def test_a_file_created_for_a_command_that_fails_is_removed(self, tmp_path: Path) -> None:
        with pytest.raises(KeyboardInterrupt), Output(str(tmp_path / "got"), "receive") as out:
            assert out.created
            raise KeyboardInterrupt
        assert entries(tmp_path) == []

    def test_tilde_is_the_home_directory(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("HOME", str(tmp_path))
        assert privilege.user_path("~/x.pcap") == tmp_path / "x.pcap"
        assert privilege.user_path("~") == tmp_path

    def test_without_sudo_there_is_no_one_to_act_as(self) -> None:
        assert privilege.invoker() is None
        assert privilege.invoker({"SUDO_UID": "x", "SUDO_GID": "1"}) is None
        same = {"SUDO_UID": str(os.geteuid()), "SUDO_GID": str(os.getegid())}
        assert privilege.invoker(same) is None
        with privilege.as_invoker() as who:
            assert who is None


@pytest.mark.usefixtures("no_sudo")
class TestCommands:
    """The handlers give the same one line (a Session over a stack that is not started)."""

    @pytest.fixture
    def sh(self) -> Iterator[Shell]:
        shell = Shell()
        yield shell
        shell.close()

    def test_capture(self, sh: Shell, tmp_path: Path) -> None:
        target = tmp_path / "nowhere" / "y.pcap"
        assert (
            error_of(sh.run, f"capture start {target}")
            == f"capture: cannot write {target}: no such directory"
        )
        assert sh.session._capture is None
        assert sh.run(f"capture start {tmp_path}/c.pcap") == [f"capturing to {tmp_path}/c.pcap"]
        assert sh.run("capture stop") == [f"capture stopped: 0 packets in {tmp_path}/c.pcap"]
        assert (tmp_path / "c.pcap").stat().st_size == 24  # the pcap header alone

    def test_receive_and_send(self, sh: Shell, tmp_path: Path) -> None:
        assert (
            error_of(sh.run, f"receive c1 --to {tmp_path}")
            == f"receive: cannot write {tmp_path}: it is a directory"
        )
        # A good path and a connection that does not exist: the error is the connection's, and no
        # file is left.
        with pytest.raises(StackError):
            sh.run(f"receive c9 --to {tmp_path}/got")
        assert entries(tmp_path) == []
        assert error_of(sh.run, f"send c1 --file {tmp_path}/absent") == (
            f"send: cannot read {tmp_path}/absent: no such file"
        )


# ---------------------------------------------------------------------- under sudo, as a throwaway user


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    group: str  # a supplementary group of the user's
    group_gid: int


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def throwaway_user() -> Iterator[User]:
    """A user and a supplementary group of its own, made with useradd and removed afterwards."""
    tag = f"tcpsh{os.getpid() % 100000}"
    name, group = f"{tag}u", f"{tag}g"
    _run("groupadd", group)
    try:
        _run(
            "useradd",
            "--no-create-home",
            "--home-dir",
            f"/tmp/{name}-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            "--groups",
            group,
            name,
        )
        try:
            import grp
            import pwd

            entry = pwd.getpwnam(name)
            yield User(name, entry.pw_uid, entry.pw_gid, group, grp.getgrnam(group).gr_gid)
        finally:
            _run("userdel", name)
            with contextlib.suppress(subprocess.CalledProcessError):
                _run("groupdel", name)
    finally:
        _run("groupdel", group)


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    if os.geteuid() != 0:
        pytest.skip("needs root: makes a throwaway user")
    with throwaway_user() as made:
        yield made


@pytest.fixture
def as_sudo(user: User, monkeypatch: pytest.MonkeyPatch) -> User:
    monkeypatch.setenv("SUDO_UID", str(user.uid))
    monkeypatch.setenv("SUDO_GID", str(user.gid))
    monkeypatch.setenv("SUDO_USER", user.name)
    return user


@pytest.fixture
def place(user: User) -> Iterator[Path]:
    """/tmp/X (root's, 0755) with `mine/` (the user's), `group/` (root:the user's supplementary group,
    0770) and `root/` (root's, 0755)."""
    base = Path(tempfile.mkdtemp(prefix="tcpsh-privilege-"))
    try:
        base.chmod(0o755)
        for name, owner, group, mode in (
            ("mine", user.uid, user.gid, 0o755),
            ("group", 0, user.group_gid, 0o770),
            ("root", 0, 0, 0o755),
        ):
            (base / name).mkdir()
            os.chown(base / name, owner, group)
            (base / name).chmod(mode)
        yield base
    finally:
        shutil.rmtree(base)


def owner(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


def fs_ids() -> tuple[int, int, list[int]]:
    """The calling thread's filesystem uid and gid, and its supplementary groups."""
    with open("/proc/thread-self/status") as f:
        fields = {line.split(":")[0]: line.split()[1:] for line in f}
    return int(fields["Uid"][3]), int(fields["Gid"][3]), [int(g) for g in fields["Groups"]]


@pytest.mark.root
class TestUnderSudo:
    def test_the_invoking_user(self, as_sudo: User) -> None:
        who = privilege.invoker()
        assert who is not None
        assert (who.uid, who.gid, who.name) == (as_sudo.uid, as_sudo.gid, as_sudo.name)
        assert as_sudo.group_gid in who.groups
        assert privilege.user_path("~/x") == Path(f"/tmp/{as_sudo.name}-home/x")

    def test_files_written_belong_to_the_user(self, as_sudo: User, place: Path) -> None:
        with Output(str(place / "mine" / "got.bin"), "receive") as out:
            out.replace(b"hello\r\n")
        with Output(str(place / "mine" / "run.pcap"), "capture") as out:
            writer = out.hand_over(PcapWriter)
        writer.write(b"E" + bytes(19))
        writer.close()
        for name in ("got.bin", "run.pcap"):
            assert owner(place / "mine" / name) == (as_sudo.uid, as_sudo.gid)
        assert (place / "mine" / "got.bin").read_bytes() == b"hello\r\n"
        assert (place / "mine" / "run.pcap").stat().st_size == 24 + 16 + 20

    def test_a_directory_writable_through_a_supplementary_group(self, as_sudo: User, place: Path) -> None:
        with Output(str(place / "group" / "got"), "receive") as out:
            out.replace(b"x")
        assert owner(place / "group" / "got") == (as_sudo.uid, as_sudo.gid)

    def test_permission_is_the_users_not_roots(self, as_sudo: User, place: Path) -> None:
        target = place / "root" / "x.pcap"
        assert error_of(Output, str(target), "capture") == (
            f"capture: cannot write {target}: permission denied for {as_sudo.name}"
        )
        assert entries(place / "root") == []
        secret = place / "root" / "secret"
        secret.write_bytes(b"root's")
        secret.chmod(0o600)
        assert error_of(read_bytes, str(secret), "send").endswith(f"permission denied for {as_sudo.name}")
        # A file the user may not write, in a directory the user may: not replaced, not removed.
        (place / "mine" / "theirs").write_bytes(b"root's")
        (place / "mine" / "theirs").chmod(0o644)
        assert "permission denied" in error_of(Output, str(place / "mine" / "theirs"), "receive")
        assert (place / "mine" / "theirs").read_bytes() == b"root's"

    def test_a_symbolic_link_planted_by_the_user_is_refused(self, as_sudo: User, place: Path) -> None:
        (place / "mine" / "passwd").symlink_to("/etc/passwd")
        assert error_of(Output, str(place / "mine" / "passwd"), "receive").endswith(
            "it is a symbolic link; give the file itself"
        )

    def test_folders_and_history_belong_to_the_user(self, as_sudo: User, place: Path) -> None:
        folder = place / "mine" / ".local" / "state" / "tcpsh"
        privilege.make_dirs(folder)
        history = UserHistory(str(folder / "history"))
        history.append_string("open 198.18.0.2:7")
        assert list(UserHistory(str(folder / "history")).load_history_strings()) == ["open 198.18.0.2:7"]
        for path in (
            place / "mine" / ".local",
            place / "mine" / ".local" / "state",
            folder,
            folder / "history",
        ):
            assert owner(path) == (as_sudo.uid, as_sudo.gid), path
        with pytest.raises(PermissionError):
            privilege.make_dirs(place / "root" / "state")
        UserHistory(str(place / "root" / "history")).append_string("lost")  # no history, no error

    def test_the_switch_is_for_the_calling_thread_only_and_undone(self, as_sudo: User) -> None:
        before = fs_ids()
        inside = threading.Event()
        done = threading.Event()
        other: list[tuple[int, int, list[int]]] = []

        def look() -> None:
            inside.wait(5)
            other.append(fs_ids())
            done.set()

        threading.Thread(target=look).start()
        with privilege.as_invoker():
            mine = fs_ids()
            with privilege.as_invoker():  # nested: the same
                assert fs_ids() == mine
            inside.set()
            assert done.wait(5)
            assert fs_ids() == mine
        assert mine[:2] == (as_sudo.uid, as_sudo.gid)
        assert sorted(mine[2]) == sorted(privilege.invoker().groups)  # type: ignore[union-attr]
        assert other == [before], "another thread kept root's filesystem ids meanwhile"
        assert fs_ids() == before

    def test_the_switch_is_undone_when_the_body_raises(self, as_sudo: User) -> None:
        before = fs_ids()
        with pytest.raises(RuntimeError), privilege.as_invoker():
            raise RuntimeError
        assert fs_ids() == before


# ---------------------------------------------------------------------- capabilities, in a child process

DROP = """
import json, os, subprocess
from tcpsh import privilege
kept = privilege.drop_capabilities()
def caps(status):
    pairs = (line.split() for line in status.splitlines() if line.startswith("Cap"))
    return {k.rstrip(":"): int(v, 16) for k, v in pairs}
child = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout
print(json.dumps({"kept": kept, "uid": os.geteuid(),
                  "me": caps(open("/proc/thread-self/status").read()), "child": caps(child)}))
"""


def bounding_now() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))


@pytest.mark.root
@pytest.mark.parametrize("sudo", [False, True], ids=["root", "sudo"])
def test_capabilities_kept_after_set_up(sudo: bool, user: User, no_sudo: None) -> None:
    import json

    env = {k: v for k, v in os.environ.items() if k not in SUDO_VARS}
    expected = dict(privilege.KEPT)
    if sudo:
        env.update(SUDO_UID=str(user.uid), SUDO_GID=str(user.gid), SUDO_USER=user.name)
        expected |= privilege.SWITCHING
    result = subprocess.run([sys.executable, "-c", DROP], env=env, capture_output=True, text=True, check=True)
    got = json.loads(result.stdout)
    mask = sum(1 << cap for cap in expected) & bounding_now()
    assert got["uid"] == 0, "the uid stays root's, for the teardown"
    assert got["kept"] == [name for cap, name in sorted(expected.items()) if bounding_now() >> cap & 1]
    for name in ("CapBnd", "CapPrm", "CapEff"):
        assert got["me"][name] == mask, name
    assert got["me"]["CapInh"] == got["me"]["CapAmb"] == 0
    # A command run afterwards (as nft is at teardown) gets no more than what was kept.
    assert got["child"]["CapPrm"] == got["child"]["CapBnd"] == mask


def test_a_file_mode_is_the_usual_one(tmp_path: Path, no_sudo: None) -> None:
    with Output(str(tmp_path / "f"), "receive") as out:
        out.replace(b"")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o666 & ~umask
