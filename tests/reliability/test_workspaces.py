"""Catalogue, read-only and damaged workspaces (docs/RELIABILITY.md, "Workspaces: read-only
folders and damaged cache entries").

The read-only cases run the CLI with file permissions in force (as root, without
CAP_DAC_OVERRIDE: :func:`catalogue.file_permissions_in_force`).  Cases that lock or damage a
cache do it to a copy of the shared workspace's cache (:meth:`catalogue.Workspace.copy`).
"""
from __future__ import annotations

import json
import os
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from catalogue import SMOKE, Workspace, file_permissions_in_force


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``chmod -R a-w folder`` for the block; the modes are restored after it."""
    modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")] if not path.is_symlink()}
    for path, mode in modes.items():
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield
    finally:
        for path, mode in sorted(modes.items(), key=lambda item: len(item[0].parts)):
            path.chmod(mode)


def test_a_read_only_launch_folder_is_one_line_before_any_folder_is_made(workspace, tmp_path):
    launch = tmp_path / "read-only-launch"
    launch.mkdir()
    with read_only(launch):
        proc = workspace.run(*SMOKE, cwd=launch, prefix=file_permissions_in_force())
        sweep = workspace.run(*SMOKE, "batch=4,8", "-m", cwd=launch, prefix=file_permissions_in_force())
    for result in (proc, sweep):
        line = workspace.assert_refused_before_any_run(result, str(launch), "not writable")
        assert "cd to a folder you can write to" in line
    assert not any(launch.iterdir())


def test_a_read_only_folder_of_the_day_is_one_line_from_the_run_folder_resolver(workspace, tmp_path):
    """The launch folder is writable, ``outputs/<date>`` is not: the resolver's one line."""
    launch = tmp_path / "launch"
    day = launch / "outputs" / time.strftime("%Y-%m-%d")
    day.mkdir(parents=True)
    with read_only(day):
        proc = workspace.run(*SMOKE, "tracking=none", cwd=launch, prefix=file_permissions_in_force())
    line = workspace.assert_refused_before_any_run(proc, str(day.relative_to(launch)), "Permission denied")
    assert "hydra.run.dir=" in line
    assert not any(day.iterdir())


def test_a_read_only_cache_serves_every_cached_stage(workspace, tmp_path):
    """Nothing needs writing: no lock file is made, the run FINISHES with the cached entries."""
    space = workspace.copy(tmp_path)
    for lock in (space.root / "cache").rglob(".*.lock"):
        lock.unlink()  # a cache copied or unpacked elsewhere has none
    with read_only(space.root / "cache"):
        proc = space.run(*SMOKE, prefix=file_permissions_in_force())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert list(space.runs().values()) == ["FINISHED"]
    for stage in ("corpus", "prepare", "train", "export"):
        assert f"{stage}: cached {space.smoke_entries[stage]}" in proc.stderr + proc.stdout
    assert not list((space.root / "cache").rglob(".*.lock"))
    space.assert_earlier_outputs_intact()


def test_a_read_only_cache_that_needs_a_new_entry_names_the_folder(workspace, tmp_path):
    space = workspace.copy(tmp_path)
    with read_only(space.root / "cache"):
        proc = space.run(*SMOKE, "backend=acl", "stage=preprocess", prefix=file_permissions_in_force())
    line = space.assert_user_error(proc, f"paths.cache_dir={space.root / 'cache'}", "preprocess")
    assert "not writable" in line and "set paths.cache_dir to a folder you can write to" in line


def test_a_file_deleted_in_a_cache_entry_is_reported_moved_aside_and_rebuilt(workspace, tmp_path):
    """``cache/export/<key>/model.onnx`` deleted, its ``_stage.json`` kept: the entry is not
    reused; it is moved aside (kept) and rebuilt, and the run FINISHES; the rerun uses it."""
    space = workspace.copy(tmp_path)
    entry = space.smoke_entries["export"]
    (entry / "model.onnx").unlink()
    proc = space.run(*SMOKE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert f"the cache entry {entry} is damaged (model.onnx: missing); moved aside to" in output
    (aside,) = entry.parent.glob(f".damaged-{entry.name}-*")
    assert (aside / "_stage.json").is_file() and not (aside / "model.onnx").exists()
    assert (entry / "model.onnx").is_file()
    assert list(space.runs().values()) == ["FINISHED"]
    again = space.run(*SMOKE)
    assert again.returncode == 0 and "damaged" not in again.stdout + again.stderr
    assert f"export: cached {entry}" in again.stdout + again.stderr


def test_a_file_changed_in_a_cache_entry_is_not_reused(workspace, tmp_path):
    """A file of the same size, other bytes (the prepared ``units``), is seen by the hash."""
    space = workspace.copy(tmp_path)
    entry = space.smoke_entries["prepare"]
    units = entry / "units"
    text = units.read_text()
    units.write_text(text.replace(" 1\n", " 7\n", 1))
    assert len(units.read_text()) == len(text)
    proc = space.run(*SMOKE, "stage=prepare")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"the cache entry {entry} is damaged (units: changed since it was written" in proc.stdout + proc.stderr
    assert units.read_text() == text


def test_an_entry_written_before_manifests_listed_files_is_used_as_it_is(workspace, tmp_path):
    space = workspace.copy(tmp_path)
    manifest_path = space.smoke_entries["export"] / "_stage.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("files")
    manifest_path.write_text(json.dumps(manifest))
    proc = space.run(*SMOKE, "stage=export")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"export: cached {space.smoke_entries['export']}" in proc.stdout + proc.stderr
    assert os.path.getsize(manifest_path) == len(json.dumps(manifest))
