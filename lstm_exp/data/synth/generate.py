"""Generate a TIMIT-format corpus with eSpeak NG: ``generate_corpus(root, cfg)``.

Layout written into ``root`` (which must exist and be empty)::

    TRAIN/DR<n>/<SPK>/<UTT>.WAV|.PHN|.WRD|.TXT     train speakers
    TEST/DR<n>/<SPK>/...                           dev and test speakers
    dev_spk.list  test_spk.list                    lower-case speaker ids, one per line
    voices.tsv  corpus.json                        voice settings; config and counts

Audio is 16 kHz NIST SPHERE PCM16; .PHN uses TIMIT's 61 labels.  Utterances are named
``SI<n>`` when their sentence (number ``n`` of ``sentences.txt``) is read by one speaker only
and ``SX<n>`` when several speakers read it.  Train and dev/test sentences are disjoint.

Determinism: each pool process initialises eSpeak once and never synthesizes itself; each
speaker's utterances are synthesized, in a fixed order and each after its own seed, in a child
freshly forked from that state, so the bytes do not depend on ``cfg.workers`` or on which
process does which speaker.  (eSpeak's waveform generator keeps state from one utterance to
the next, so a fixed order per fresh process is what makes it reproducible.)
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile
from scipy.signal import firwin, resample_poly
from tqdm import tqdm

from lstm_exp.data.synth import espeak
from lstm_exp.data.synth.phonemes import (
    WordPhonemeCounter,
    align_phones,
    rescale,
    strip_stress,
    word_spans,
)
from lstm_exp.data.synth.voices import Voice, train_pool, voice
from lstm_exp.data.workers import die_with_parent, process_context
from lstm_exp.errors import ConfigError, DataError

if TYPE_CHECKING:  # conf_schemas.synth imports the voice table from this package
    from conf_schemas.synth import SynthCorpusConfig

SAMPLE_RATE = 16000
SENTENCES_FILE = Path(__file__).with_name("sentences.txt")
EVAL_SENTENCE_SHARE = 0.25  # part of the shuffled sentence list reserved for dev/test
LEAD_SECONDS = 0.10  # silence added before the speech (TIMIT-like leading h#)
TAIL_SECONDS = 0.05  # silence added after eSpeak's end pause
MAX_ROUNDS = 6  # attempts to replace utterances that come out longer than max_seconds
_STAGING = ".staging"


@dataclass(frozen=True)
class _Job:
    """One utterance to synthesize: everything the child needs, nothing else."""

    split: str
    voice: Voice
    sentence_no: int  # 1-based line number in sentences.txt
    text: str
    espeak_seed: int
    noise_seed: int
    snr_db: Optional[float]
    max_samples: int
    staging_stem: str  # path without suffix


def load_sentences(path: Path = SENTENCES_FILE) -> List[str]:
    """The frozen sentence list, one sentence per line."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    sentences = [line for line in lines if line]
    if len(sentences) != len(lines):
        raise DataError(f"{path}: blank lines in the sentence list; one sentence per line")
    return sentences


def _derived_seed(*parts: object) -> int:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


# --------------------------------------------------------------------------- child side

@functools.lru_cache(maxsize=4)
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """The FIR low-pass ``resample_poly`` designs by default, designed once per process."""
    half_len = 10 * max(up, down)
    return firwin(2 * half_len + 1, 1.0 / max(up, down), window=("kaiser", 5.0))


def _pool_init() -> None:
    die_with_parent()  # a killed job leaves no worker behind
    rate = espeak.initialize()
    g = math.gcd(SAMPLE_RATE, rate)
    _resampling_filter(SAMPLE_RATE // g, rate // g)


def _write_utterance(job: _Job) -> Dict[str, object]:
    """Synthesize, align, resample, add noise, write the four files; runs in a forked child."""
    v = job.voice
    espeak.set_voice(v.espeak_name, v.rate, v.pitch, v.pitch_range, v.volume)
    syn = espeak.synthesize(job.text, job.espeak_seed)
    rate = syn.sample_rate
    lead, tail = int(LEAD_SECONDS * rate), int(TAIL_SECONDS * rate)
    audio = np.concatenate(
        [np.zeros(lead, np.int16), syn.samples[: syn.end_sample], np.zeros(tail, np.int16)]
    )
    up, down = SAMPLE_RATE, rate
    g = math.gcd(up, down)
    up, down = up // g, down // g
    total = -(-len(audio) * up // down)
    if total > job.max_samples:
        return {"status": "too_long", "num_samples": total}

    starts = [0] + [p.sample + lead for p in syn.phonemes]
    mnemonics = ["_"] + [p.mnemonic for p in syn.phonemes]
    segs = align_phones(starts, mnemonics, audio, rate)
    x = resample_poly(audio.astype(np.float64), up, down, window=_resampling_filter(up, down))
    x = x[:total]
    if job.snr_db is not None:
        power = float(np.mean(x**2))
        noise_std = np.sqrt(power / 10.0 ** (job.snr_db / 10.0))
        x = x + np.random.default_rng(job.noise_seed).normal(0.0, noise_std, len(x))
    clipped = int(np.count_nonzero(np.abs(x) > 32767))
    pcm = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    segs16 = rescale(segs, up, down, len(pcm))

    counter = WordPhonemeCounter(espeak.text_to_phonemes)
    words = word_spans(
        job.text,
        [(w.text_position, w.sample + lead) for w in syn.words],
        [(s, strip_stress(m)) for s, m in zip(starts, mnemonics)],
        segs16,
        counter,
    )
    stem = Path(job.staging_stem)
    soundfile.write(str(stem) + ".WAV", pcm, SAMPLE_RATE, format="NIST", subtype="PCM_16")
    Path(str(stem) + ".PHN").write_text(
        "".join(f"{s.start} {s.end} {s.label}\n" for s in segs16), encoding="ascii"
    )
    Path(str(stem) + ".WRD").write_text(
        "".join(f"{a} {b} {w}\n" for a, b, w in words), encoding="ascii"
    )
    Path(str(stem) + ".TXT").write_text(f"0 {len(pcm)} {job.text}\n", encoding="ascii")
    return {
        "status": "ok",
        "num_samples": len(pcm),
        "clipped": clipped,
        "labels": dict(Counter(s.label for s in segs16)),
    }


def _run_in_forked_child(jobs: List[_Job]) -> List[Dict[str, object]]:
    """Pool task: one speaker's jobs, in order, in a child forked from the unused eSpeak state.

    The child starts from the state every pool process reaches after the same initialisation,
    and synthesizes the jobs in their fixed order, each after its own seed, so the results
    depend on the jobs only (not on the process, the other tasks or the number of workers).
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        results: List[Dict[str, object]] = []
        try:
            for job in jobs:
                results.append(_write_utterance(job))
            payload = json.dumps(results)
        except BaseException:  # report anything to the parent, never return into the pool
            results.append({"status": "error", "error": traceback.format_exc()})
            payload = json.dumps(results, default=str)
            code = 1
        with os.fdopen(write_fd, "w") as out:
            out.write(payload)
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        payload = inp.read()
    _, status = os.waitpid(pid, 0)
    results = json.loads(payload) if payload else []
    if len(results) < len(jobs) and not (results and results[-1]["status"] == "error"):
        results.append({"status": "error", "error": f"synthesis child died (status {status})"})
    return results


# --------------------------------------------------------------------------- parent side

def _plan_speakers(cfg: "SynthCorpusConfig") -> Dict[str, List[Voice]]:
    dev = [voice(s) for s in cfg.dev_speakers]
    test = [voice(s) for s in cfg.test_speakers]
    train = train_pool(list(cfg.dev_speakers) + list(cfg.test_speakers))[: cfg.train_speakers]
    return {"train": train, "dev": dev, "test": test}


def _sentence_pools(n_sentences: int, seed: int) -> Dict[str, List[int]]:
    order = np.random.default_rng(seed).permutation(n_sentences).tolist()
    n_eval = max(1, int(round(EVAL_SENTENCE_SHARE * n_sentences)))
    return {"eval": order[:n_eval], "train": order[n_eval:]}


class _SpeakerQueue:
    """A speaker's sentences: a block of the pool, then the following ones as replacements."""

    def __init__(self, pool: List[int], start: int) -> None:
        self._pool, self._next, self._used = pool, start, set()

    def take(self) -> Optional[int]:
        for _ in range(len(self._pool)):
            idx = self._pool[self._next % len(self._pool)]
            self._next += 1
            if idx not in self._used:
                self._used.add(idx)
                return idx
        return None


def _run_jobs(jobs: Sequence[_Job], workers: int, progress: bool, desc: str) -> List[Dict]:
    """Results of ``jobs`` (same order); one pool task per speaker, jobs kept in order."""
    groups: Dict[str, List[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.voice.speaker_id, []).append(i)
    tasks = [[jobs[i] for i in idx] for idx in groups.values()]
    results: List[Optional[Dict]] = [None] * len(jobs)
    ctx = process_context("forkserver")
    with ctx.Pool(processes=min(workers, max(1, len(tasks))), initializer=_pool_init) as pool, \
            tqdm(total=len(jobs), desc=desc, disable=not progress, unit="utt") as bar:
        for idx, task_results in zip(groups.values(), pool.imap(_run_in_forked_child, tasks)):
            for i, res in zip(idx, task_results):
                results[i] = res
            if task_results and task_results[-1]["status"] == "error":
                speaker = jobs[idx[0]].voice.speaker_id
                raise RuntimeError(f"synthesizing speaker {speaker} failed:\n"
                                   f"{task_results[-1]['error']}")
            bar.update(len(idx))
    return [r for r in results if r is not None]


def generate_corpus(root: Path, cfg: "SynthCorpusConfig", progress: bool = True) -> dict:
    """Write a synthetic TIMIT tree into the empty folder ``root``; return a summary dict.

    The summary holds, per split, the number of speakers, utterances and seconds of audio,
    plus ``total_seconds``, ``replaced_too_long`` and ``elapsed_seconds``.
    """
    t0 = time.perf_counter()
    espeak.check_available()
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: corpus folder does not exist; create it (empty) first")
    if any(root.iterdir()):
        raise DataError(f"{root}: corpus folder is not empty; give an empty folder")
    sentences = load_sentences()
    speakers = _plan_speakers(cfg)
    pools = _sentence_pools(len(sentences), cfg.seed)
    for split, per in (("train", cfg.utts_per_train_speaker), ("dev", cfg.utts_per_eval_speaker)):
        pool = pools["train" if split == "train" else "eval"]
        if per > len(pool):
            key = "utts_per_train_speaker" if split == "train" else "utts_per_eval_speaker"
            raise ConfigError(f"{key}: {per} is more than the {len(pool)} sentences available "
                              f"to the {split} speakers; write at most {len(pool)}")
    staging = root / _STAGING
    staging.mkdir()
    max_samples = int(cfg.max_seconds * SAMPLE_RATE)

    # queues: speaker j of a pool group starts at j * utts_per_speaker
    queues: Dict[str, _SpeakerQueue] = {}
    wanted: Dict[str, int] = {}
    split_of: Dict[str, str] = {}
    eval_offset = 0
    for split in ("train", "dev", "test"):
        per = cfg.utts_per_train_speaker if split == "train" else cfg.utts_per_eval_speaker
        pool = pools["train"] if split == "train" else pools["eval"]
        for j, v in enumerate(speakers[split]):
            start = j * per if split == "train" else eval_offset
            if split != "train":
                eval_offset += per
            queues[v.speaker_id] = _SpeakerQueue(pool, start)
            wanted[v.speaker_id] = per
            split_of[v.speaker_id] = split

    def make_job(v: Voice, sentence_idx: int) -> _Job:
        no = sentence_idx + 1
        return _Job(
            split=split_of[v.speaker_id], voice=v, sentence_no=no, text=sentences[sentence_idx],
            espeak_seed=_derived_seed(cfg.seed, "espeak", v.speaker_id, no),
            noise_seed=_derived_seed(cfg.seed, "noise", v.speaker_id, no),
            snr_db=cfg.snr_db, max_samples=max_samples,
            staging_stem=str(staging / f"{v.speaker_id}_{no}"),
        )

    all_voices = [v for split in ("train", "dev", "test") for v in speakers[split]]
    pending: List[_Job] = []
    for v in all_voices:
        for _ in range(wanted[v.speaker_id]):
            idx = queues[v.speaker_id].take()
            assert idx is not None  # guaranteed by the pool-size check above
            pending.append(make_job(v, idx))
    done: List[Tuple[_Job, Dict]] = []
    replaced = 0
    for round_no in range(MAX_ROUNDS):
        desc = "synth corpus" if round_no == 0 else f"synth corpus (replacements {round_no})"
        results = _run_jobs(pending, cfg.workers, progress, desc)
        retry: List[_Job] = []
        for job, res in zip(pending, results):
            if res["status"] == "too_long":
                replaced += 1
                idx = queues[job.voice.speaker_id].take()
                if idx is None:
                    raise ConfigError(f"max_seconds: {cfg.max_seconds} leaves speaker "
                                      f"{job.voice.speaker_id} too few short sentences; "
                                      "raise max_seconds")
                retry.append(make_job(job.voice, idx))
            else:
                done.append((job, res))
        pending = retry
        if not pending:
            break
    if pending:
        raise ConfigError(f"max_seconds: {cfg.max_seconds} s is too short for "
                          f"{len(pending)} utterances after {MAX_ROUNDS} rounds of "
                          "replacement sentences; raise max_seconds")

    summary = _place_files(root, staging, done, speakers)
    _write_metadata(root, cfg, speakers, done, summary, len(sentences))
    summary["replaced_too_long"] = replaced
    summary["elapsed_seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def _place_files(
    root: Path, staging: Path, done: List[Tuple[_Job, Dict]], speakers: Dict[str, List[Voice]]
) -> dict:
    readers = Counter(job.sentence_no for job, _ in done)
    summary: dict = {}
    for split, voices in speakers.items():
        summary[split] = {"speakers": len(voices), "utterances": 0, "seconds": 0.0}
    for job, res in sorted(done, key=lambda d: (d[0].voice.speaker_id, d[0].sentence_no)):
        v = job.voice
        top = "TRAIN" if job.split == "train" else "TEST"
        kind = "SI" if readers[job.sentence_no] == 1 else "SX"
        folder = root / top / f"DR{v.dialect_region}" / v.speaker_id
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in (".WAV", ".PHN", ".WRD", ".TXT"):
            os.replace(job.staging_stem + suffix, folder / f"{kind}{job.sentence_no}{suffix}")
        summary[job.split]["utterances"] += 1
        summary[job.split]["seconds"] += res["num_samples"] / SAMPLE_RATE
    shutil.rmtree(staging)
    for split in speakers:
        summary[split]["seconds"] = round(summary[split]["seconds"], 3)
    summary["total_seconds"] = round(sum(summary[s]["seconds"] for s in speakers), 3)
    return summary


def _write_metadata(
    root: Path,
    cfg: "SynthCorpusConfig",
    speakers: Dict[str, List[Voice]],
    done: List[Tuple[_Job, Dict]],
    summary: dict,
    n_sentences: int,
) -> None:
    for split in ("dev", "test"):
        (root / f"{split}_spk.list").write_text(
            "".join(f"{v.speaker_id.lower()}\n" for v in speakers[split]), encoding="ascii"
        )
    rows = ["speaker_id\tsplit\tvariant\tespeak_voice\tgender\trate_wpm\tpitch\trange\t"
            "volume\tdialect_region"]
    for split in ("train", "dev", "test"):
        for v in speakers[split]:
            rows.append(f"{v.speaker_id.lower()}\t{split}\t{v.variant}\t{v.espeak_name}\t"
                        f"{v.gender}\t{v.rate}\t{v.pitch}\t{v.pitch_range}\t{v.volume}\t"
                        f"DR{v.dialect_region}")
    (root / "voices.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    labels: Counter = Counter()
    for _, res in done:
        labels.update(res["labels"])
    meta = {
        "format": "TIMIT (LDC layout), synthesized with eSpeak NG en-us",
        "generator": _generator_version(),
        "sample_rate": SAMPLE_RATE,
        "config": asdict(cfg),
        "sentences_available": n_sentences,
        "counts": {s: summary[s] for s in ("train", "dev", "test")},
        "total_seconds": summary["total_seconds"],
        "clipped_samples": sum(int(res["clipped"]) for _, res in done),
        "phone_counts": dict(sorted(labels.items())),
    }
    (root / "corpus.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _generator_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return f"espeakng-loader {version('espeakng-loader')}"
    except PackageNotFoundError:
        return "espeakng-loader (version unknown)"
