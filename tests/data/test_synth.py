"""Tests of the embedded synthetic TIMIT-format corpus (lstm_exp.data.synth)."""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from conf_schemas.synth import SynthCorpusConfig
from lstm_exp.data.synth import phonemes
from lstm_exp.data.synth.voices import CURATED_VOICES, VOICES_BY_ID
from lstm_exp.errors import ConfigError, DataError, MissingDependencyError

REPO = Path(__file__).resolve().parents[2]
PHONE_MAP = REPO / "lstm_exp" / "resources" / "timit" / "phones.60-48-39.map"
SENTENCES = REPO / "lstm_exp" / "data" / "synth" / "sentences.txt"


def _phone_map() -> Dict[str, str]:
    fold = {}
    for line in PHONE_MAP.read_text().splitlines():
        cols = line.split()
        fold[cols[0]] = cols[2] if len(cols) == 3 else ""
    return fold


TIMIT61 = set(_phone_map())
TINY = dict(train_speakers=3, utts_per_train_speaker=2, dev_speakers=["mmal1"],
            test_speakers=["ffem3"], utts_per_eval_speaker=2)


def _generate(root: Path, **overrides) -> dict:
    from lstm_exp.data.synth import generate_corpus

    root.mkdir(parents=True)
    return generate_corpus(root, SynthCorpusConfig(**{**TINY, **overrides}), progress=False)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Dict[str, Tuple[Path, dict]]:
    pytest.importorskip("espeakng_loader")
    base = tmp_path_factory.mktemp("synth")
    return {
        "two": (base / "w2", _generate(base / "w2", workers=2)),
        "one": (base / "w1", _generate(base / "w1", workers=1)),
        "noisy": (base / "snr10", _generate(base / "snr10", workers=2, snr_db=10.0)),
    }


def _read_phn(path: Path) -> List[Tuple[int, int, str]]:
    rows = []
    for line in path.read_text().splitlines():
        a, b, label = line.split()
        rows.append((int(a), int(b), label))
    return rows


def _utterances(root: Path) -> List[Path]:
    return sorted(root.glob("*/DR*/*/*.WAV"))


# ------------------------------------------------------------------ pure functions

def test_mapping_only_produces_timit61_labels():
    produced = {label for labels in phonemes.MNEMONIC_TO_TIMIT.values() for label in labels}
    produced |= set(phonemes.CLOSURE_OF.values()) | {"h#"}
    assert produced <= TIMIT61
    with pytest.raises(phonemes.UnknownMnemonicError):
        phonemes.map_mnemonic("xx")
    assert phonemes.map_mnemonic("'aI3") == ("ay", "axr")


def test_align_shares_zero_length_and_cuts_closure_from_silence():
    rate = 1000  # 1 sample per ms keeps the numbers readable
    x = np.full(400, 3000, dtype=np.int16)
    x[:50] = 0  # leading silence
    x[230:280] = 0  # 50 ms of silence at the end of "a" (before the stop)
    x[350:] = 0  # trailing silence
    starts = [0, 50, 150, 150, 280, 350]
    mnems = ["_", "l", "'a", "n", "t", "_:"]  # "n" arrives with zero length
    segs = phonemes.align_phones(starts, mnems, x, rate)
    got = [(s.start, s.end, s.label) for s in segs]
    assert got[0] == (0, 50, "h#") and got[-1] == (350, 400, "h#")
    labels = [s.label for s in segs]
    assert labels == ["h#", "l", "ae", "n", "tcl", "t", "h#"]
    # "l" shares its 100 ms with the zero-length "ae"; "n" is cut by the 50 ms closure
    assert got[1] == (50, 100, "l") and got[2] == (100, 150, "ae")
    assert got[4] == (230, 280, "tcl")
    assert all(a < b for a, b, _ in got)
    assert all(got[i][1] == got[i + 1][0] for i in range(len(got) - 1))


def test_rescale_keeps_contiguity_and_total():
    segs = [phonemes.Segment(0, 441, "h#", 0), phonemes.Segment(441, 442, "b", 1),
            phonemes.Segment(442, 2205, "h#", 2)]
    out = phonemes.rescale(segs, 320, 441, 1600)
    assert out[0].start == 0 and out[-1].end == 1600
    assert all(a.end == b.start and a.start < a.end for a, b in zip(out, out[1:]))


def test_sentence_list_is_large_clean_and_licensed():
    lines = SENTENCES.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 2000 and len(set(lines)) == len(lines)
    for line in lines:
        assert re.fullmatch(r"[A-Za-z ,.'\-]+", line), line
        assert 4 <= len(line.split()) <= 14, line
    licence = (SENTENCES.parent / "SENTENCES-LICENSE.txt").read_text()
    assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in licence


# ------------------------------------------------------------------ config

def test_config_defaults_are_valid_and_disjoint():
    cfg = SynthCorpusConfig()
    assert not set(cfg.dev_speakers) & set(cfg.test_speakers)
    assert "mlee0" not in cfg.dev_speakers + cfg.test_speakers
    assert len(CURATED_VOICES) >= 40
    assert len(VOICES_BY_ID) == len(CURATED_VOICES)
    for v in CURATED_VOICES:
        assert re.fullmatch(r"[MF][A-Z]{3}\d", v.speaker_id), v.speaker_id
        assert not re.search(r"whisper|croak|robo|robot", v.variant, re.I)


def test_config_collects_every_fault():
    with pytest.raises(ConfigError) as err:
        SynthCorpusConfig(train_speakers=0, dev_speakers=["nobody", "mmal1"],
                          test_speakers=["mmal1"], workers=0, max_seconds=1.0)
    text = str(err.value)
    lines = text.splitlines()
    assert "5 fault" in lines[0]
    for needle in ("train_speakers", "workers", "nobody", "in both", "max_seconds"):
        assert needle in text
    with pytest.raises(ConfigError, match="train_speakers: 99"):
        SynthCorpusConfig(train_speakers=99)


def test_missing_espeak_raises_missing_dependency(tmp_path, monkeypatch):
    from lstm_exp.data.synth import generate_corpus

    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import now fails
    with pytest.raises(MissingDependencyError, match=r"lstm_exp\[synth\]"):
        generate_corpus(tmp_path, SynthCorpusConfig(**TINY), progress=False)


def test_refuses_non_empty_root(tmp_path):
    pytest.importorskip("espeakng_loader")
    from lstm_exp.data.synth import generate_corpus

    (tmp_path / "junk").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        generate_corpus(tmp_path, SynthCorpusConfig(**TINY), progress=False)


# ------------------------------------------------------------------ generated corpus

def test_tree_layout_and_lists(corpora):
    root, summary = corpora["two"]
    assert summary["train"]["utterances"] == 6
    assert summary["dev"]["utterances"] == 2 and summary["test"]["utterances"] == 2
    assert (root / "dev_spk.list").read_text() == "mmal1\n"
    assert (root / "test_spk.list").read_text() == "ffem3\n"
    train_spk = {p.name.lower() for p in root.glob("TRAIN/DR*/*")}
    test_spk = {p.name.lower() for p in root.glob("TEST/DR*/*")}
    assert len(train_spk) == 3 and test_spk == {"mmal1", "ffem3"}
    assert not train_spk & test_spk
    wavs = _utterances(root)
    assert len(wavs) == 10
    for wav in wavs:
        assert re.fullmatch(r"(TRAIN|TEST)/DR[1-8]/[MF][A-Z]{3}\d/S[IX]\d+\.WAV",
                            wav.relative_to(root).as_posix())
        for suffix in (".PHN", ".WRD", ".TXT"):
            assert wav.with_suffix(suffix).is_file()
    meta = json.loads((root / "corpus.json").read_text())
    assert meta["counts"]["train"]["utterances"] == 6
    assert meta["config"]["utts_per_train_speaker"] == 2
    voices = (root / "voices.tsv").read_text().splitlines()
    assert voices[0].startswith("speaker_id\tsplit\tvariant") and len(voices) == 6
    assert not list(root.glob(".staging"))


def test_audio_labels_and_words(corpora):
    import soundfile

    root, _ = corpora["two"]
    closures = 0
    for wav in _utterances(root):
        assert wav.read_bytes()[:7] == b"NIST_1A"
        info = soundfile.info(str(wav))
        assert (info.samplerate, info.format, info.subtype) == (16000, "NIST", "PCM_16")
        audio, _ = soundfile.read(str(wav), dtype="int16")
        n = len(audio)
        assert 16000 <= n <= 7.6 * 16000
        phn = _read_phn(wav.with_suffix(".PHN"))
        assert phn[0][0] == 0 and phn[-1][1] == n
        assert phn[0][2] == "h#" and phn[-1][2] == "h#"
        assert all(a < b for a, b, _ in phn)
        assert all(phn[i][1] == phn[i + 1][0] for i in range(len(phn) - 1))
        assert {label for _, _, label in phn} <= TIMIT61
        closures += sum(label.endswith("cl") for _, _, label in phn)
        txt = wav.with_suffix(".TXT").read_text().split(" ", 2)
        assert txt[0] == "0" and int(txt[1]) == n
        sentence_words = [w.strip("'").lower() for w in re.findall(r"[A-Za-z']+", txt[2])]
        wrd = [line.split() for line in wav.with_suffix(".WRD").read_text().splitlines()]
        assert [w for _, _, w in wrd] == sentence_words
        for a, b, _ in wrd:
            assert 0 < int(a) < int(b) <= n
        assert all(int(wrd[i][1]) <= int(wrd[i + 1][0]) for i in range(len(wrd) - 1))
        # speech inside the first and last word, near-silence in the leading h#
        lead = audio[: phn[0][1]].astype(np.float64)
        speech = audio[int(wrd[0][0]):int(wrd[-1][1])].astype(np.float64)
        assert np.sqrt(np.mean(speech**2)) > 20 * (np.sqrt(np.mean(lead**2)) + 1)
    assert closures >= 10


def test_output_does_not_depend_on_workers(corpora):
    two, one = corpora["two"][0], corpora["one"][0]
    files_two = sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    files_one = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files_two == files_one
    for rel in files_two:
        if rel.name == "corpus.json":
            a = json.loads((two / rel).read_text())
            b = json.loads((one / rel).read_text())
            assert a["config"].pop("workers") == 2 and b["config"].pop("workers") == 1
            assert a == b
        else:
            assert (two / rel).read_bytes() == (one / rel).read_bytes(), rel


def test_noise_reaches_configured_snr(corpora):
    import soundfile

    clean_root, noisy_root = corpora["two"][0], corpora["noisy"][0]
    for wav in _utterances(clean_root):
        rel = wav.relative_to(clean_root)
        clean, _ = soundfile.read(str(wav), dtype="float64")
        noisy, _ = soundfile.read(str(noisy_root / rel), dtype="float64")
        assert len(clean) == len(noisy)
        snr = 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
        assert abs(snr - 10.0) < 0.5, (rel, snr)
        assert (noisy_root / rel).with_suffix(".PHN").read_bytes() == \
            wav.with_suffix(".PHN").read_bytes()


# ------------------------------------------------------------------ full size (slow)

def _check_fold_coverage(root: Path) -> None:
    fold = _phone_map()
    meta = json.loads((root / "corpus.json").read_text())
    folded = {fold[label] for label in meta["phone_counts"] if fold[label]}
    assert folded == {v for v in fold.values() if v}, sorted(set(fold.values()) - folded)
    assert meta["clipped_samples"] == 0


@pytest.mark.slow
def test_default_corpus_covers_all_39_phones(tmp_path):
    pytest.importorskip("espeakng_loader")
    from lstm_exp.data.synth import generate_corpus

    t0 = time.perf_counter()
    summary = generate_corpus(tmp_path, SynthCorpusConfig(), progress=False)
    assert summary["train"]["utterances"] == 990
    assert summary["dev"]["utterances"] == summary["test"]["utterances"] == 204
    _check_fold_coverage(tmp_path)
    assert time.perf_counter() - t0 < 120


@pytest.mark.slow
def test_timit_sized_corpus(tmp_path):
    pytest.importorskip("espeakng_loader")
    from lstm_exp.data.synth import generate_corpus

    cfg = SynthCorpusConfig(train_speakers=56, utts_per_train_speaker=70,
                            utts_per_eval_speaker=56)
    summary = generate_corpus(tmp_path, cfg, progress=False)
    assert summary["train"]["utterances"] == 56 * 70
    assert len(list(tmp_path.glob("TRAIN/DR*/*/SX*.WAV"))) > 0
    _check_fold_coverage(tmp_path)
    print(f"TIMIT-sized synthetic corpus: {summary}")
    assert summary["elapsed_seconds"] < 600


def test_too_long_sentences_are_replaced(tmp_path):
    pytest.importorskip("espeakng_loader")
    summary = _generate(tmp_path / "short", max_seconds=3.0)
    assert summary["replaced_too_long"] > 0
    wavs = _utterances(tmp_path / "short")
    assert len(wavs) == 10
    for wav in wavs:
        n = int(wav.with_suffix(".TXT").read_text().split()[1])
        assert n <= 3.0 * 16000
