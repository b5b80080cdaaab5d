"""The stage cache: content-addressed keys, atomic entries, force, and what happens when things go
wrong (docs/RELIABILITY.md): concurrent builders, a holder killed by a signal, a full disk, an
interrupted or failed (forced) rebuild."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lstm_exp import cache as cache_module
from lstm_exp.cache import MANIFEST, CacheDiskFullError, CacheLockError, StageCache
from lstm_exp.errors import LstmExpError

CHECKOUT = Path(__file__).resolve().parent.parent

#: a process using the cache: waits for <sync>/go, then needs entry ("s", {"x": 1});
#: its build appends its pid to <sync>/builds, writes a partial file, then per mode:
#: race - waits for <sync>/release; hang - forks a child that sleeps, says <sync>/building, sleeps
#: until killed; quick - finishes at once.  Prints "<entry path> <pid of the builder>".
WORKER = r"""
import logging, os, sys, time
from pathlib import Path
from lstm_exp.cache import StageCache

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
root, mode, sync = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
cache = StageCache(root)

def build(out):
    with open(sync / "builds", "a") as counter:
        counter.write(f"{os.getpid()}\n")
    (out / "partial.txt").write_text("partial")
    if mode == "hang":
        child = os.fork()
        if child == 0:  # e.g. a data loader worker: inherits every descriptor, outlives its parent
            time.sleep(120)
            os._exit(0)
        (sync / "child").write_text(str(child))
        (sync / "building").write_text(str(os.getpid()))
        time.sleep(120)
    while mode == "race" and not (sync / "release").exists():
        time.sleep(0.02)
    (out / "result.txt").write_text(str(os.getpid()))

while not (sync / "go").exists():
    time.sleep(0.01)
path = cache.run("s", cache.key("s", {"x": 1}, []), build)
print(path, (path / "result.txt").read_text(), flush=True)
"""


def _worker(root: Path, mode: str, sync: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(root), mode, str(sync)], env=env,
                            stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _leftovers(stage_dir: Path) -> list[str]:
    return sorted(p.name for p in stage_dir.iterdir() if p.name.startswith((".tmp-", ".stale-")))


def test_key_depends_on_config_upstream_and_version(tmp_path):
    cache = StageCache(tmp_path)
    base = cache.key("prepare", {"a": 1, "b": [1, 2]}, ["k0"])
    assert base == cache.key("prepare", {"b": [1, 2], "a": 1}, ["k0"])  # order of keys is irrelevant
    assert base != cache.key("prepare", {"a": 2, "b": [1, 2]}, ["k0"])
    assert base != cache.key("prepare", {"a": 1, "b": [1, 2]}, ["k1"])
    assert base != cache.key("prepare", {"a": 1, "b": [1, 2]}, ["k0"], version="2")
    assert base != cache.key("train", {"a": 1, "b": [1, 2]}, ["k0"])


def test_build_runs_once_then_comes_from_cache(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def build(out):
        calls.append(out)
        (out / "result.txt").write_text("42")
        return {"value": 42}

    key = cache.key("s", {"x": 1}, [])
    first = cache.run("s", key, build)
    second = cache.run("s", key, build)
    assert first == second == tmp_path / "s" / key
    assert len(calls) == 1
    assert (first / "result.txt").read_text() == "42"
    assert cache.manifest("s", key)["summary"] == {"value": 42}


def test_interrupted_build_leaves_no_entry_and_the_next_run_rebuilds(tmp_path):
    cache = StageCache(tmp_path)
    key = cache.key("s", {}, [])

    def broken(out):
        (out / "half.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.run("s", key, broken)
    assert not cache.is_done("s", key)
    assert not (tmp_path / "s" / key).exists()
    assert [p.name for p in (tmp_path / "s").iterdir() if not p.name.endswith(".lock")] == []
    entry = cache.run("s", key, lambda out: (out / "whole.txt").write_text("whole"))
    assert sorted(p.name for p in entry.iterdir()) == [MANIFEST, "whole.txt"]


def test_force_replaces_only_when_the_new_entry_is_complete(tmp_path):
    cache = StageCache(tmp_path)
    key = cache.key("s", {}, [])
    cache.run("s", key, lambda out: (out / "v").write_text("1"))

    def broken(out):
        (out / "v").write_text("half")
        raise RuntimeError("boom")

    def interrupted(out):
        (out / "v").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(RuntimeError):
        cache.run("s", key, broken, force=True)
    with pytest.raises(KeyboardInterrupt):
        cache.run("s", key, interrupted, force=True)
    assert (tmp_path / "s" / key / "v").read_text() == "1"  # the old entry survives failed rebuilds
    assert cache.is_done("s", key) and _leftovers(tmp_path / "s") == []
    cache.run("s", key, lambda out: (out / "v").write_text("2"), force=True)
    assert (tmp_path / "s" / key / "v").read_text() == "2"
    assert (tmp_path / "s" / key / MANIFEST).is_file()
    assert _leftovers(tmp_path / "s") == []


def test_a_full_disk_removes_the_partial_entry_and_names_it(tmp_path):
    cache = StageCache(tmp_path)
    earlier = cache.run("s", cache.key("s", {"n": 1}, []), lambda out: (out / "a").write_text("A"))
    key = cache.key("s", {"n": 2}, [])

    def fills_the_disk(out):
        (out / "big").write_text("x" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "big"))

    def fills_the_disk_inside_a_library(out):
        try:
            fills_the_disk(out)
        except OSError as exc:
            raise RuntimeError("writer failed") from exc

    for build in (fills_the_disk, fills_the_disk_inside_a_library):
        with pytest.raises(CacheDiskFullError) as err:
            cache.run("s", key, build)
        message = str(err.value)
        assert isinstance(err.value, LstmExpError) and "\n" not in message
        assert "no space left" in message and str(tmp_path / "s" / key) in message
        assert not (tmp_path / "s" / key).exists() and _leftovers(tmp_path / "s") == []
    assert (earlier / "a").read_text() == "A" and (earlier / MANIFEST).is_file()


def test_a_file_system_without_locks_stops_with_one_line_naming_the_lock(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(cache_module.fcntl, "lockf", no_locks)
    cache = StageCache(tmp_path)
    key = cache.key("s", {}, [])
    with pytest.raises(CacheLockError) as err:
        cache.run("s", key, lambda out: (out / "v").write_text("1"))
    assert isinstance(err.value, LstmExpError) and "\n" not in str(err.value)
    assert str(cache.lock_path("s", key)) in str(err.value) and "paths.cache_dir" in str(err.value)
    assert not cache.path("s", key).exists()


def test_threads_of_one_process_racing_for_one_entry_build_it_once(tmp_path):
    cache = StageCache(tmp_path)
    key = cache.key("s", {}, [])
    builds, results = [], []
    release = threading.Event()

    def build(out):
        builds.append(threading.get_ident())
        release.wait(30)
        (out / "v").write_text("built")

    threads = [threading.Thread(target=lambda: results.append(cache.run("s", key, build))) for _ in range(3)]
    for thread in threads:
        thread.start()
    _wait_for(lambda: builds, "the first build")
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(30)
    assert len(builds) == 1 and results == [tmp_path / "s" / key] * 3


def test_two_processes_racing_for_one_entry_build_it_once_and_both_use_it(tmp_path):
    root, sync = tmp_path / "cache", tmp_path / "sync"
    sync.mkdir()
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    workers = [_worker(root, "race", sync, log) for log in logs]
    try:
        (sync / "go").touch()
        _wait_for(lambda: (sync / "builds").exists(), "a build to start")
        _wait_for(lambda: any("waiting for the lock" in log.read_text() for log in logs), "the other process to wait")
        (sync / "release").touch()
        outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [worker.returncode for worker in workers] == [0, 0], [log.read_text() for log in logs]
    builders = (sync / "builds").read_text().split()
    assert len(builders) == 1  # built once ...
    assert outputs[0] == outputs[1] and outputs[0].split()[1] == builders[0]  # ... and both use that entry
    waiting = next(log.read_text() for log in logs if "waiting for the lock" in log.read_text())
    assert f"held by pid {builders[0]} on " in waiting


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_build_killed_by_a_signal_neither_blocks_nor_is_reused(tmp_path, signum):
    root, sync = tmp_path / "cache", tmp_path / "sync"
    sync.mkdir()
    (sync / "go").touch()
    cache = StageCache(root)
    key = cache.key("s", {"x": 1}, [])
    killed = _worker(root, "hang", sync, tmp_path / "killed.log")
    child = nxt = None
    try:
        _wait_for(lambda: (sync / "building").exists() and (sync / "child").exists(), "the build to start")
        child = int((sync / "child").read_text())
        os.kill(killed.pid, signum)
        killed.wait(30)
        # what the killed build left: its record in the lock file, a partial temp folder, a live child
        assert json.loads(cache.lock_path("s", key).read_text())["pid"] == killed.pid
        assert len(_leftovers(root / "s")) == 1 and not cache.is_done("s", key)
        os.kill(child, 0)  # the forked child still runs, with a copy of every descriptor of the killed build

        nxt = _worker(root, "quick", sync, tmp_path / "next.log")
        out, _ = nxt.communicate(timeout=60)  # a lock that blocked would time out here
        log = (tmp_path / "next.log").read_text()
        assert nxt.returncode == 0, log
    finally:
        for process in (killed, nxt):
            if process is not None:
                process.kill()
        if child is not None:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    entry, builder = out.split()
    assert Path(entry) == cache.path("s", key) and builder == str(nxt.pid)
    assert f"taking over the lock {cache.lock_path('s', key)} left by pid {killed.pid} on " in log
    assert "which is no longer running" in log
    assert sorted(p.name for p in Path(entry).iterdir()) == [MANIFEST, "partial.txt", "result.txt"]
    assert _leftovers(root / "s") == []
    assert cache.lock_path("s", key).read_text() == ""  # released cleanly this time


# -- verified before use ----------------------------------------------------------------------------
def _entry_with_files(cache: StageCache) -> tuple[Path, list]:
    builds = []

    def build(out: Path) -> dict:
        builds.append(1)
        (out / "sub").mkdir()
        (out / "sub" / "big.bin").write_bytes(bytes(range(256)) * 100)  # 25,600 bytes: both ends hashed
        (out / "small.txt").write_text("abc")
        return {}

    return cache.run("s", "k", build), builds


def test_the_manifest_lists_each_file_with_its_size_and_end_hash(tmp_path):
    cache = StageCache(tmp_path)
    entry, _ = _entry_with_files(cache)
    files = json.loads((entry / MANIFEST).read_text())["files"]
    assert sorted(files) == ["small.txt", "sub/big.bin"]
    assert files["small.txt"][0] == 3 and files["sub/big.bin"][0] == 25600
    assert cache.damage("s", "k") == ""


@pytest.mark.parametrize("damage, said", [
    (lambda e: (e / "sub" / "big.bin").unlink(), "sub/big.bin: missing"),
    (lambda e: (e / "sub" / "big.bin").write_bytes(b"x" * 10), "sub/big.bin: 10 bytes, the manifest says 25600"),
    (lambda e: (e / "small.txt").write_text("abd"), "small.txt: changed since it was written"),
    (lambda e: (e / "sub" / "big.bin").write_bytes(bytes(range(256)) * 99 + bytes(255) + b"!"),
     "sub/big.bin: changed since it was written"),  # the last byte: the end hash sees it
], ids=["missing", "truncated", "same-size", "last-byte"])
def test_a_damaged_entry_is_moved_aside_and_rebuilt(tmp_path, caplog, damage, said):
    cache = StageCache(tmp_path)
    entry, builds = _entry_with_files(cache)
    damage(entry)
    assert cache.damage("s", "k").startswith(said)
    with caplog.at_level("WARNING"):
        again, builds_again = _entry_with_files(cache)
    assert again == entry and builds_again == [1] and cache.damage("s", "k") == ""
    (aside,) = tmp_path.joinpath("s").glob(".damaged-k-*")
    assert (aside / MANIFEST).is_file()
    assert f"the cache entry {entry} is damaged ({said}" in caplog.text and str(aside) in caplog.text


def test_an_intact_entry_is_used_without_its_lock(tmp_path, monkeypatch):
    cache = StageCache(tmp_path)
    _entry_with_files(cache)
    cache.lock_path("s", "k").unlink()

    def no_lock(*args, **kwargs):
        raise AssertionError("an intact entry took its lock")

    monkeypatch.setattr(StageCache, "_lock", no_lock)
    entry, builds = _entry_with_files(cache)
    assert builds == [] and not cache.lock_path("s", "k").exists()
