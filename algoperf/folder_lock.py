"""One writer per trial folder: a lock that the operating system releases when its owner dies.

A process that trains a trial, or deletes one (``--overwrite``), first takes the folder's lock:
``flock`` on ``<folder>/.algoperf.lock``, which also records the owner (pid, host, command,
start time) for the message a second writer gets:

    experiments/nadamw/mnist_tiny_pytorch/trial_1 is in use by pid 4242 on host-a
    (algoperf run --workload=mnist_tiny ..., since 2026-12-01 10:02:11): wait for it to end or
    stop it

A process keeps every lock it took until it releases them or exits, so a second run of the
same experiment cannot slip into a trial folder between two trials of the first. ``flock`` locks
belong to an open file, so the lock is gone the moment its process is killed (kill -9 included),
and a lock taken again by the process that holds it is a no-op.
"""
import fcntl
import json
import os
import socket
import sys
import time
from typing import Dict, Optional

LOCK_FILE = ".algoperf.lock"
# Exit status of a command refused because another process owns its folder (EX_TEMPFAIL): the
# suite does not record such a trial as failed, its owner is still working on it.
EXIT_IN_USE = 75

_held: Dict[str, int] = {}  # real path of the folder -> fd of its lock file


class FolderInUseError(RuntimeError):
    """Another live process owns the folder."""

    def __init__(self, folder: str, owner: Dict[str, object]):
        self.folder, self.owner = folder, owner
        since = owner.get("since")
        since_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) \
            if isinstance(since, (int, float)) else "?"
        super().__init__(
            f"{folder} is in use by pid {owner.get('pid', '?')} on {owner.get('host', '?')} "
            f"({owner.get('command', '?')}, since {since_text}): wait for it to end or stop it")


def _key(folder: str) -> str:
    return os.path.realpath(folder)


def owner_of(folder: str) -> Optional[Dict[str, object]]:
    """The owner recorded in the folder's lock file (None: no lock file, or unreadable)."""
    try:
        with open(os.path.join(folder, LOCK_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def acquire(folder: str) -> None:
    """Take the folder's lock (creating the folder), or raise ``FolderInUseError``."""
    key = _key(folder)
    if key in _held:
        return
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderInUseError(folder, owner_of(folder) or {}) from None
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "command": " ".join(["algoperf"] + sys.argv[1:])[:300], "since": time.time()}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(owner) + "\n").encode())
    _held[key] = fd


def is_held_here(folder: str) -> bool:
    return _key(folder) in _held


def release(folder: str) -> None:
    fd = _held.pop(_key(folder), None)
    if fd is not None:
        os.close(fd)  # closing the last fd of the open file releases the flock


def release_all() -> None:
    for key in list(_held):
        os.close(_held.pop(key))
