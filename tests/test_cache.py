"""The stage cache: content-addressed keys, atomic entries, force."""
from __future__ import annotations

import pytest

from lstm_exp.cache import MANIFEST, StageCache


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


def test_interrupted_build_leaves_no_entry(tmp_path):
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


def test_force_replaces_only_when_the_new_entry_is_complete(tmp_path):
    cache = StageCache(tmp_path)
    key = cache.key("s", {}, [])
    cache.run("s", key, lambda out: (out / "v").write_text("1"))

    def broken(out):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.run("s", key, broken, force=True)
    assert (tmp_path / "s" / key / "v").read_text() == "1"  # the old entry survives a failed rebuild
    cache.run("s", key, lambda out: (out / "v").write_text("2"), force=True)
    assert (tmp_path / "s" / key / "v").read_text() == "2"
    assert (tmp_path / "s" / key / MANIFEST).is_file()
