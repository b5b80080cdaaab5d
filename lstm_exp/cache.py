"""Content-addressed, atomically written stage outputs.

A stage's output folder is ``<cache_dir>/<stage>/<key>/`` where ``key`` hashes the resolved
config subtrees the stage depends on, the keys of its upstream stages and the stage's code
version.  The stage writes into a fresh temporary folder beside it; only when it returns is the
folder renamed into place, so an interrupted run never leaves a half-written entry and a later
run simply recomputes it.  docs/RELIABILITY.md lists what happens when things go wrong.

* Concurrent jobs (parallel launchers, two shells) that need the same entry serialise on a
  per-entry lock ``<stage>/.<key>.lock``: the first builds, the others wait, then find it done.
  The lock is a POSIX record lock (``fcntl.lockf``), owned by the process that took it: the
  kernel drops it when that process dies, however it dies, and children it forked (data loader
  workers, tools) never hold it.  The lock file records the holder's pid, host and start time;
  a record still there when the lock is next taken is the trace of a holder that died, and is
  reported with a warning naming the lock file.
* Leftovers of an interrupted build of the same entry (``.tmp-<key>-*``, ``.stale-<key>-*``) are
  removed under the lock before the next build, so they are never reused and never pile up.
* A file system that cannot lock (``ENOLCK``, some network or FUSE mounts) stops with
  :class:`CacheLockError`, one line naming the lock file, instead of running unlocked.
* A full disk (``ENOSPC``/``EDQUOT``) while a stage writes removes the partial entry and raises
  :class:`CacheDiskFullError`, one line naming the entry; earlier entries are untouched.
* ``force`` rebuilds into a temporary folder too; the old entry is replaced only once the new one
  is complete, and survives a failed or interrupted rebuild.

    >>> cache = StageCache("/tmp/cache")
    >>> key = cache.key("prepare", {"data": {"kind": "synth"}}, upstream=[])
    >>> out = cache.run("prepare", key, lambda tmp: (tmp / "units").write_text("blank 0\\n"))
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from stat import S_ISREG
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from lstm_exp.errors import LstmExpError

log = logging.getLogger(__name__)

MANIFEST = "_stage.json"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
#: a waiter that finds the lock file still empty polls briefly for the new holder's record (for its message)
RECORD_POLLS, RECORD_POLL_S = 25, 0.02

#: one in-process lock per lock file: POSIX record locks do not exclude threads of one process,
#: and closing any descriptor of the file would drop the process's lock
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class CacheDiskFullError(LstmExpError):
    """The disk filled up while a stage wrote its cache entry."""


class CacheLockError(LstmExpError):
    """The file system of the cache cannot lock files."""


def file_stamp(path: str | os.PathLike) -> Optional[list]:
    """``[size, mtime_ns]`` of the file at ``path``, None when there is none: what a stage key (or a
    job's fingerprint) holds for a file the config names only by its path, so that the file
    replaced at the same path changes the key."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns] if S_ISREG(stat.st_mode) else None


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _pid_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _holder_record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _read_holder(fd: int) -> Optional[dict]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    if not raw.strip():
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return {"pid": "?", "host": "?", "started": "?", "raw": raw[:80].decode(errors="replace")}
    return record if isinstance(record, dict) else None


def _describe(holder: Optional[dict]) -> str:
    if not holder:
        return "a process that has not written its record yet"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"


def _disk_full(exc: BaseException) -> Optional[OSError]:
    """The ENOSPC/EDQUOT OSError in ``exc``'s chain of causes, if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def _thread_lock(path: Path) -> Iterator[None]:
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.setdefault(str(path), threading.Lock())
    with lock:
        yield


class StageCache:
    """Stage outputs under one root folder, addressed by what they depend on."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def key(self, stage: str, config: Mapping[str, Any], upstream: Sequence[str], version: str = "1") -> str:
        """A 16-hex-digit key of ``config`` (plain containers), upstream keys and ``version``."""
        payload = _canonical({"stage": stage, "config": config, "upstream": list(upstream), "version": version})
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lock_path(self, stage: str, key: str) -> Path:
        return self.root / stage / f".{key}.lock"

    def is_done(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / MANIFEST).is_file()

    def manifest(self, stage: str, key: str) -> dict:
        return json.loads((self.path(stage, key) / MANIFEST).read_text())

    @contextmanager
    def _lock(self, stage: str, key: str) -> Iterator[None]:
        """Hold the entry's lock: wait for a live holder; take over the trace of a dead one."""
        lock_path = self.lock_path(stage, key)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with _thread_lock(lock_path):
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                try:
                    try:
                        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError as exc:
                        if exc.errno not in (errno.EACCES, errno.EAGAIN):
                            raise
                        holder = _read_holder(fd)
                        for _ in range(RECORD_POLLS):  # the holder writes its record just after locking
                            if holder:
                                break
                            time.sleep(RECORD_POLL_S)
                            holder = _read_holder(fd)
                        log.info("%s: waiting for the lock %s, held by %s", stage, lock_path, _describe(holder))
                        fcntl.lockf(fd, fcntl.LOCK_EX)
                except OSError as exc:
                    if exc.errno not in NO_LOCKS:
                        raise
                    raise CacheLockError(
                        f"cannot lock {lock_path} ({exc.strerror}): the file system of paths.cache_dir does not "
                        f"support file locks; set paths.cache_dir to a folder on a local disk"
                    ) from exc
                left = _read_holder(fd)
                if left:  # a clean release empties the file: its holder died holding the lock
                    here = left.get("host") == socket.gethostname()
                    fate = ("is no longer running" if here and isinstance(left.get("pid"), int)
                            and not _pid_is_running(left["pid"]) else "did not release it")
                    log.warning("%s: taking over the lock %s left by %s, which %s", stage, lock_path, _describe(left), fate)
                os.ftruncate(fd, 0)
                try:
                    os.pwrite(fd, json.dumps(_holder_record()).encode(), 0)
                except OSError as exc:  # the lock holds without its record; a full disk is reported by run()
                    if exc.errno not in DISK_FULL:
                        raise
                try:
                    yield
                finally:
                    os.ftruncate(fd, 0)
                    fcntl.lockf(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _remove_leftovers(self, stage: str, key: str) -> None:
        """Partial builds of this entry by a process that was killed (call with the lock held)."""
        for pattern in (f".tmp-{key}-*", f".stale-{key}-*"):
            for leftover in self.root.joinpath(stage).glob(pattern):
                log.warning("%s: removing %s, left by an interrupted build", stage, leftover)
                shutil.rmtree(leftover, ignore_errors=True)

    def run(
        self,
        stage: str,
        key: str,
        build: Callable[[Path], Optional[Mapping[str, Any]]],
        *,
        config: Optional[Mapping[str, Any]] = None,
        upstream: Sequence[str] = (),
        force: bool = False,
    ) -> Path:
        """Return the entry's folder, building it with ``build(tmp_dir)`` unless it is cached.

        ``build`` may return a summary dict; it is stored in the manifest with the config and
        upstream keys.  With ``force`` an existing entry is rebuilt and replaced only once the
        new one is complete.
        """
        final = self.path(stage, key)
        with self._lock(stage, key):
            self._remove_leftovers(stage, key)
            if not force and (final / MANIFEST).is_file():
                log.info("%s: cached %s", stage, final)
                return final
            tmp = final.parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            started = time.time()
            try:
                tmp.mkdir(parents=True)
                summary = build(tmp) or {}
                manifest = {
                    "stage": stage,
                    "key": key,
                    "config": config or {},
                    "upstream": list(upstream),
                    "summary": summary,
                    "seconds": round(time.time() - started, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
                if final.exists():
                    stale = final.parent / f".stale-{key}-{uuid.uuid4().hex[:8]}"
                    final.rename(stale)
                    tmp.rename(final)
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    tmp.rename(final)
            except BaseException as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                full = _disk_full(exc)
                if full is not None:
                    where = f" (writing {full.filename})" if full.filename else ""
                    raise CacheDiskFullError(
                        f"{stage}: no space left on the device for the cache entry {final}{where}; the partial "
                        f"entry was removed and earlier entries are intact: free space, or set paths.cache_dir "
                        f"to a larger disk"
                    ) from exc
                raise
        log.info("%s: built %s in %.1f s", stage, final, time.time() - started)
        return final
