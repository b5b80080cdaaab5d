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
* Every entry is verified before use: its manifest lists each file with its size and a hash of
  its first and last :data:`SAMPLE_BYTES` bytes (:func:`file_record`).  An entry with a file
  missing or changed is moved aside to ``<stage>/.damaged-<key>-<time>/`` (kept for a look, never
  deleted) and rebuilt, with a warning naming both.  Entries written before manifests had a file
  list (no ``files`` field) are used as they are, unverified.
* A complete, intact entry is used without taking its lock, so a read-only cache (or one on a
  read-only mount) serves every stage it holds; only a build needs to write.  A build that
  cannot write there stops with :class:`CacheNotWritableError`, one line naming the folder.

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
#: bytes hashed at each end of a cache file (:func:`file_record`): cheap on a corpus of thousands
#: of WAV files, and enough to see a truncated, replaced or rewritten-header file
SAMPLE_BYTES = 4096
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
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


class CacheNotWritableError(LstmExpError):
    """A stage has to be built, and the cache folder is read-only."""


def entry_of_build(build_dir: Path) -> Optional[Path]:
    """The entry a temporary build folder (``<stage>/.tmp-<key>-<pid>-<random>``) becomes, or None
    for another folder: for a stage that leaves something beside its entry when it fails."""
    name = Path(build_dir).name
    if not name.startswith(".tmp-"):
        return None
    return Path(build_dir).parent / name[len(".tmp-"):].split("-", 1)[0]


def file_record(path: Path) -> list:
    """``[size, sha256 of the first and last SAMPLE_BYTES bytes]`` of a file in a cache entry."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            handle.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(handle.read(SAMPLE_BYTES))
    return [size, digest.hexdigest()[:16]]


def entry_files(folder: Path) -> dict[str, list]:
    """Relative path -> :func:`file_record` of every file under ``folder`` but the manifest."""
    return {str(path.relative_to(folder)): file_record(path) for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != MANIFEST}


def entry_damage(folder: Path, recorded: Mapping[str, list]) -> str:
    """What differs from the manifest's file list (``"model.onnx: missing"``), or "" if nothing."""
    for name, record in recorded.items():
        path = folder / name
        try:
            actual = file_record(path)
        except FileNotFoundError:
            return f"{name}: missing"
        except OSError as exc:
            return f"{name}: unreadable ({exc.strerror})"
        if actual[0] != record[0]:
            return f"{name}: {actual[0]} bytes, the manifest says {record[0]}"
        if actual != list(record):
            return f"{name}: changed since it was written (content differs)"
    return ""


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

    def damage(self, stage: str, key: str) -> Optional[str]:
        """None when the entry is not there (no manifest); "" when it is intact; else what is wrong."""
        folder = self.path(stage, key)
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return f"{MANIFEST}: unreadable ({exc})"
        return entry_damage(folder, manifest.get("files") or {})

    def _move_aside(self, stage: str, key: str, damage: str) -> None:
        """Keep a damaged entry for a look (``.damaged-<key>-<time>``), out of the way of the rebuild."""
        final = self.path(stage, key)
        aside = final.parent / f".damaged-{key}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:4]}"
        try:
            final.rename(aside)
        except OSError as exc:
            if exc.errno in NOT_WRITABLE:
                raise self._not_writable(stage, key, exc) from exc
            raise
        log.warning("%s: the cache entry %s is damaged (%s); moved aside to %s, rebuilding it", stage, final, damage, aside)

    def _not_writable(self, stage: str, key: str, exc: OSError) -> CacheNotWritableError:
        return CacheNotWritableError(
            f"{stage}: the cache entry {self.path(stage, key)} has to be built, but paths.cache_dir={self.root} is "
            f"not writable ({exc.strerror}: {exc.filename}): set paths.cache_dir to a folder you can write to, or "
            f"make this one writable")

    def _open_lock_file(self, stage: str, key: str) -> int:
        lock_path = self.lock_path(stage, key)
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            if exc.errno in NOT_WRITABLE:
                raise self._not_writable(stage, key, exc) from exc
            raise

    @contextmanager
    def _lock(self, stage: str, key: str) -> Iterator[None]:
        """Hold the entry's lock: wait for a live holder; take over the trace of a dead one."""
        lock_path = self.lock_path(stage, key)
        with _thread_lock(lock_path):
            fd = self._open_lock_file(stage, key)
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
        if not force and self.damage(stage, key) == "":  # complete and intact: no lock, no write
            log.info("%s: cached %s", stage, final)
            return final
        with self._lock(stage, key):
            self._remove_leftovers(stage, key)
            damage = None if force else self.damage(stage, key)
            if damage == "":  # built by another process while this one waited
                log.info("%s: cached %s", stage, final)
                return final
            if damage:
                self._move_aside(stage, key, damage)
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
                    "files": entry_files(tmp),
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
                if isinstance(exc, OSError) and exc.errno in NOT_WRITABLE and str(exc.filename).startswith(str(self.root)):
                    raise self._not_writable(stage, key, exc) from exc
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
