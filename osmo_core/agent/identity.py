"""Which OS identity a task runs as (`OsmoConfig.task_isolation`).

Without isolation a task runs as the agent (the user of a single-user `jupyter lab`). With it,
the agent (root, or holding CAP_SETUID/CAP_SETGID/CAP_CHOWN) runs each OSMO user's tasks under
an OS identity of that user's own, as JupyterHub's local spawners do, but without /etc/passwd
entries: a uid (and a group of the same number) from a configured range, allocated at the
user's first task and kept in ROOT/task-uids.json (0600, under an flock) so it never changes.
Two tasks of one user share a uid (they pass data through inputs/outputs); tasks of two users
cannot read each other's folders, and no task can read the agent's root (the data folder, 0700).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import grp
import json
import os
import pwd
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

UIDS = "task-uids.json"
_CAP_CHOWN, _CAP_SETGID, _CAP_SETUID = 0, 6, 7
_SETID = stat.S_ISUID | stat.S_ISGID


@dataclass(frozen=True)
class TaskIdentity:
    user: str
    uid: int
    gid: int


def can_setuid() -> bool:
    """Whether this process may start tasks as other users and hand them their folders."""
    if os.geteuid() == 0:
        return True
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        line = next(ln for ln in status if ln.startswith("CapEff:"))
    except (OSError, StopIteration):
        return False
    caps = int(line.split()[1], 16)
    return all(caps >> bit & 1 for bit in (_CAP_CHOWN, _CAP_SETGID, _CAP_SETUID))


def parse_range(text: str) -> tuple[int, int]:
    """ "LO-HI" -> (LO, HI); ValueError unless 0 < LO <= HI < 2**32 - 1."""
    lo_s, sep, hi_s = text.partition("-")
    lo, hi = int(lo_s), int(hi_s) if sep else int(lo_s)
    if not 0 < lo <= hi < 2**32 - 1:
        raise ValueError(f"uid range {text!r}: want LO-HI with 0 < LO <= HI < 4294967295")
    return lo, hi


class UidMap:
    """OSMO user name -> TaskIdentity, allocated once per user, stable across agent restarts."""

    def __init__(self, root: Path, lo: int, hi: int):
        self.path = root / UIDS
        self.lo, self.hi = lo, hi
        self._known: dict[str, int] = {}

    def of(self, user: str) -> TaskIdentity:
        if not user:
            raise ValueError("the task has no owner to run as (LaunchRequest.user is empty)")
        uid = self._known.get(user)
        if uid is None:
            uid = self._known[user] = self._allocate(user)
        return TaskIdentity(user, uid, uid)

    def _allocate(self, user: str) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # two agents of one root never run, but be sure
            text = f.read()
            users: dict[str, int] = json.loads(text) if text.strip() else {}
            if user not in users:
                used = set(users.values())
                free = next(
                    (u for u in range(self.lo, self.hi + 1) if u not in used and _unnamed(u)),
                    None,
                )
                if free is None:
                    raise ValueError(f"no free uid left in {self.lo}-{self.hi} for {user!r}")
                users[user] = free
                f.seek(0)
                f.truncate()
                f.write(json.dumps(users, sort_keys=True))
                f.flush()
                os.fsync(f.fileno())
            self._known.update(users)
            return users[user]


def _unnamed(uid: int) -> bool:
    """No account of the host (passwd, LDAP...) has this uid or gid: a task never becomes
    someone who logs in, nor joins their group."""
    try:
        pwd.getpwuid(uid)
        return False
    except KeyError:
        pass
    try:
        grp.getgrgid(uid)
        return False
    except KeyError:
        return True


def make_dir(path: Path, mode: int, owner: TaskIdentity | None = None) -> None:
    """mkdir with exactly `mode` (the agent's umask is 077), owned by `owner` if given."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    os.chmod(path, mode, follow_symlinks=False)
    if owner is not None:
        os.lchown(path, owner.uid, owner.gid)


def hand_over(top: Path, owner: TaskIdentity) -> None:
    """Give what the agent (root) made under `top` (files, downloads, input links) to the
    task's identity, without following links, and drop setuid/setgid bits on the way."""
    os.lchown(top, owner.uid, owner.gid)
    for dirpath, dirs, names in os.walk(top):  # does not descend into symlinked folders
        for name in dirs + names:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if st.st_uid != owner.uid or st.st_gid != owner.gid:
                os.lchown(p, owner.uid, owner.gid)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & _SETID:
                os.chmod(p, stat.S_IMODE(st.st_mode) & ~_SETID)


def drop_setid(mode: int) -> int:
    """A file mode as written by a task, a download or an upload: no setuid/setgid bits."""
    return mode & ~_SETID & 0o7777


def secure_dir(path: Path) -> None:
    """The data folder: 0700, and its top-level files (store, keys, logs) 0600 — a folder
    written under an older, looser umask is fixed at start."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    for entry in os.scandir(path):
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
                os.chmod(entry.path, stat.S_IMODE(st.st_mode) & 0o700)
            elif stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077:
                os.chmod(entry.path, 0o700)


_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def acting_as(identity: TaskIdentity | None) -> Iterator[None]:
    """File system calls of this thread as `identity` (Linux fsuid/fsgid: per thread, and
    root's file capabilities are off while they are set); as itself without one."""
    if identity is None:
        yield
        return
    uid, gid = os.geteuid(), os.getegid()
    _libc.setfsgid(identity.gid)
    _libc.setfsuid(identity.uid)
    if _libc.setfsuid(identity.uid) != identity.uid:  # it answers the previous value
        _libc.setfsuid(uid)
        _libc.setfsgid(gid)
        raise PermissionError(f"cannot act as uid {identity.uid}")
    try:
        yield
    finally:
        _libc.setfsuid(uid)
        _libc.setfsgid(gid)


def opener(identity: TaskIdentity) -> Callable[[str], int]:
    """Opens a file of the task's for the agent to upload, as the task: only what the task
    could read itself, whatever links it swaps in meanwhile (the upload reads the fd)."""

    def open_as_task(path: str) -> int:
        with acting_as(identity):
            return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO: no wait

    return open_as_task


_PR_SET_NO_NEW_PRIVS = 38


def no_new_privileges() -> None:
    """No process started from here on gains privileges by exec (setuid-root programs such
    as su or a stray copy of a shell, file capabilities): the tasks of an isolated agent stay
    their users. The agent keeps its own."""
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
