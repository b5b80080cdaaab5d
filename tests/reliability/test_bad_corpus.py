"""Catalogue: corpora and audio (docs/RELIABILITY.md, "Bad inputs")."""
from __future__ import annotations

from catalogue import SMOKE


def test_missing_corpus_root(workspace, tmp_path):
    missing = tmp_path / "no-such-TIMIT"
    proc = workspace.run(*SMOKE, "data=timit", f"data.root={missing}")
    workspace.assert_user_error(proc, str(missing))
