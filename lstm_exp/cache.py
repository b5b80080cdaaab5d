"""Content-addressed, atomically written stage outputs.

A stage's output folder is ``<cache_dir>/<stage>/<key>/`` where ``key`` hashes the resolved
config subtrees the stage depends on, the keys of its upstream stages and the stage's code
version.  The stage writes into a fresh temporary folder beside it; only when it returns is the
folder renamed into place, so an interrupted run never leaves a half-written entry and a later
run simply recomputes it.  A per-entry lock serialises concurrent jobs (parallel launchers) that
need the same entry: the second waits, then finds it done.

    >>> cache = StageCache("/tmp/cache")
    >>> key = cache.key("prepare", {"data": {"kind": "synth"}}, upstream=[])
    >>> out = cache.run("prepare", key, lambda tmp: (tmp / "units").write_text("blank 0\\n"))
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

log = logging.getLogger(__name__)

MANIFEST = "_stage.json"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


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

    def is_done(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / MANIFEST).is_file()

    def manifest(self, stage: str, key: str) -> dict:
        return json.loads((self.path(stage, key) / MANIFEST).read_text())

    @contextmanager
    def _lock(self, stage: str, key: str) -> Iterator[None]:
        lock_path = self.root / stage / f".{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

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
            if not force and (final / MANIFEST).is_file():
                log.info("%s: cached %s", stage, final)
                return final
            tmp = final.parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            started = time.time()
            try:
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
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        log.info("%s: built %s in %.1f s", stage, final, time.time() - started)
        return final
