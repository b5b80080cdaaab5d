"""Kaldi fbank features, global CMVN and the recipe's load-time splice/skip/pad.

Extraction reproduces ``compute-fbank-feats`` (kaldi-native-fbank is a faithful port of
Kaldi's ``FbankComputer``) on samples in int16 scale, as Kaldi reads 16-bit wavs.  With
``use_energy`` the log energy is column 0 and the mel bins follow (Kaldi's layout unless
``htk_compat``, which puts the energy last).  Features are stored uncompressed; the recipe
piped them through ``copy-feats --compress=true`` (lossy, ~1e-3 relative), which we do not.

CMVN statistics use Kaldi's layout (``compute-cmvn-stats``): a float64 ``[2, D+1]`` matrix,
row 0 = per-dimension sums with the frame count in the last column, row 1 = sums of squares.
``apply_cmvn`` follows ``apply-cmvn --norm-vars``: variances below 1e-20 are floored.

``splice_skip_pad`` is the recipe's loader (Diamondfan/CTC_pytorch ``utils/tools.py``:
``make_context(feat, 0, 2)`` then ``skip_feat(feat, 2)``, then zero rows up to a multiple of
``n_downsample`` = 2 in ``SpeechDataset.__getitem__``): row t of the spliced matrix is
``[f[t], f[min(t+1, T-1)], f[min(t+2, T-1)]]`` (the original builds each shifted copy by
dropping the first row and repeating the last one), rows 0, skip, 2*skip, ... are kept, and
one zero row is appended when the count is odd.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import kaldi_native_fbank as knf
import kaldiio
import numpy as np
import soundfile
from tqdm import tqdm

from conf_schemas.features import FbankConfig
from lstm_exp.data.workers import die_with_parent, process_context
from lstm_exp.errors import DataError

# Kaldi's apply-cmvn floors variances at this value before taking 1/sqrt.
CMVN_VARIANCE_FLOOR = 1e-20


def fbank_options(opts: FbankConfig) -> knf.FbankOptions:
    """Translate our config into kaldi-native-fbank's options object."""
    knf_opts = knf.FbankOptions()
    frame = knf_opts.frame_opts
    frame.samp_freq = float(opts.sample_frequency)
    frame.frame_length_ms = float(opts.frame_length_ms)
    frame.frame_shift_ms = float(opts.frame_shift_ms)
    frame.window_type = opts.window_type
    frame.blackman_coeff = float(opts.blackman_coeff)
    frame.dither = float(opts.dither)
    frame.preemph_coeff = float(opts.preemph_coeff)
    frame.remove_dc_offset = bool(opts.remove_dc_offset)
    frame.snip_edges = bool(opts.snip_edges)
    frame.round_to_power_of_two = bool(opts.round_to_power_of_two)
    mel = knf_opts.mel_opts
    mel.num_bins = int(opts.num_mel_bins)
    mel.low_freq = float(opts.low_freq)
    mel.high_freq = float(opts.high_freq)
    mel.is_librosa = False  # Kaldi's (HTK) mel scale and triangular filters
    knf_opts.use_energy = bool(opts.use_energy)
    knf_opts.energy_floor = float(opts.energy_floor)
    knf_opts.raw_energy = bool(opts.raw_energy)
    knf_opts.htk_compat = bool(opts.htk_compat)
    knf_opts.use_log_fbank = bool(opts.use_log_fbank)
    knf_opts.use_power = bool(opts.use_power)
    return knf_opts


def compute_fbank(samples: np.ndarray, opts: FbankConfig) -> np.ndarray:
    """Fbank features ``float32 [T, num_mel_bins (+1 energy)]`` of one mono waveform.

    ``samples`` must be in int16 scale (an int16 array, or floats in [-32768, 32767]) as Kaldi
    reads wavs; floats in [-1, 1] give features offset by log(32768^2).  A waveform shorter
    than one frame gives ``T = 0`` (as Kaldi, with ``snip_edges``).
    """
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise DataError(f"waveform of shape {samples.shape}: expected a 1-D mono signal")
    computer = knf.OnlineFbank(fbank_options(opts))
    # a list converts to the binding's std::vector<float> ~2x faster than an ndarray does
    computer.accept_waveform(float(opts.sample_frequency), samples.astype(np.float32).tolist())
    computer.input_finished()
    num_frames = computer.num_frames_ready
    dim = opts.num_mel_bins + (1 if opts.use_energy else 0)
    feats = np.empty((num_frames, dim), dtype=np.float32)
    for t in range(num_frames):
        feats[t] = computer.get_frame(t)
    return feats


def read_audio(path: Path, sample_frequency: float) -> np.ndarray:
    """Samples of a mono 16-bit file (SPHERE or wav) as int16; DataError naming the file."""
    try:
        samples, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    except (RuntimeError, OSError, soundfile.LibsndfileError) as exc:
        raise DataError(f"{path}: cannot read audio ({exc}); expected a NIST SPHERE or wav "
                        "file with 16-bit PCM") from None
    if samples.shape[1] != 1:
        raise DataError(f"{path}: {samples.shape[1]} channels; expected mono audio")
    if rate != sample_frequency:
        raise DataError(f"{path}: sample rate {rate} Hz, but fbank.sample_frequency is "
                        f"{sample_frequency:g}; resample the corpus or change the config")
    return samples[:, 0]


def _features_of_file(job: tuple[str, str, FbankConfig]) -> np.ndarray:
    """Worker: read one file and compute its features (module level so it pickles)."""
    utt_id, path, opts = job
    feats = compute_fbank(read_audio(Path(path), opts.sample_frequency), opts)
    if feats.shape[0] == 0:
        raise DataError(f"{path}: utterance {utt_id} is shorter than one frame "
                        f"({opts.frame_length_ms:g} ms); remove it from the corpus")
    return feats


def extract_features(items: Sequence[tuple[str, Path]], opts: FbankConfig, out_dir: Path,
                     workers: int = 2, progress: bool = True) -> dict[str, int]:
    """Compute fbank for ``(utt_id, audio_path)`` items into ``out_dir/feats.{ark,scp}``.

    Work is spread over ``workers`` processes; the archive is written in the order of
    ``items`` whatever the worker count, so it is byte-identical across runs.  Returns the
    number of frames of each utterance (insertion-ordered like ``items``).
    """
    if workers < 1:
        raise DataError(f"workers={workers}: write a number of processes >= 1")
    utt_ids = [utt_id for utt_id, _ in items]
    seen: set[str] = set()
    duplicates = sorted({u for u in utt_ids if u in seen or seen.add(u)})
    if duplicates:
        raise DataError(f"duplicate utterance ids given to feature extraction: "
                        f"{', '.join(duplicates[:10])}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(utt_id, str(path), opts) for utt_id, path in items]
    ark, scp = out_dir / "feats.ark", out_dir / "feats.scp"
    num_frames: dict[str, int] = {}
    # closing(): an interrupt or error while writing stops the workers at once, not when the
    # generator is garbage-collected
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer, \
            closing(_compute_in_order(jobs, workers, progress)) as computed:
        for utt_id, feats in zip(utt_ids, computed):
            writer(utt_id, feats)
            num_frames[utt_id] = int(feats.shape[0])
    return num_frames


def _compute_in_order(jobs: list[tuple[str, str, FbankConfig]], workers: int,
                      progress: bool) -> Iterator[np.ndarray]:
    """Features of each job, yielded in job order (in-process when workers == 1)."""
    bar = tqdm(total=len(jobs), desc="fbank", unit="utt", disable=not progress, file=sys.stderr)
    with bar:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                yield _features_of_file(job)
                bar.update(1)
            return
        # spawn: safe even when the parent holds threads (torch, MLflow); order is kept by map.
        context = process_context("spawn")
        chunk = max(1, min(32, len(jobs) // (workers * 8)))
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                   initializer=die_with_parent, initargs=(os.getpid(),))
        try:
            with _workers_born_deaf_to_interrupts():
                results = pool.map(_features_of_file, jobs, chunksize=chunk)  # submits all: starts the workers
            for feats in results:
                yield feats
                bar.update(1)
        except BaseException:  # Ctrl-C / SIGTERM, a worker's error, or the consumer stopped (GeneratorExit)
            _stop_workers(pool)
            raise
        pool.shutdown(wait=True)


#: signals a user or a scheduler sends to a whole process group (Ctrl-C in a terminal; SIGHUP when
#: the terminal or SSH session closes; SIGTERM
#: from ``kill -- -<pgid>``, ``timeout``, Slurm): only the parent handles them
GROUP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextmanager
def _workers_born_deaf_to_interrupts() -> Iterator[None]:
    """Start the workers with SIGINT and SIGTERM blocked, for their whole life: a blocked signal
    mask is inherited through fork and exec, and Python does not unblock it.  The parent handles
    an interrupt and stops the pool cleanly (:func:`_stop_workers`); a worker that got the signal
    would print a traceback (while importing) or die in the middle of sending a result, which
    leaves the pool's reader thread waiting forever for the rest of it (the process would hang
    at exit).  While the workers start, the parent only notes such a signal (another thread may
    take it, and an interrupt in the middle of starting a worker would leave it half-started)
    and raises it as soon as they are started, so nothing is lost."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    handlers = {signum: signal.signal(signum, lambda number, frame: noted.append(number)) for signum in GROUP_SIGNALS}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, GROUP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)  # a pending signal is noted here
        for signum, handler in handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    if noted:
        signal.raise_signal(noted[0])  # as if it came now: the job's own handler takes it


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Stop the pool after an interrupt or an error: queued work is dropped and the chunks the
    workers already hold are finished (a chunk is at most 32 utterances); the workers then exit,
    so none outlives the job.  They are not terminated: one killed while it sends a result leaves
    the pool waiting forever for the rest of it."""
    pool.shutdown(wait=True, cancel_futures=True)


def compute_cmvn_stats(feats: Iterable[np.ndarray]) -> np.ndarray:
    """Global CMVN statistics in Kaldi's layout, float64 ``[2, D+1]``."""
    stats: np.ndarray | None = None
    for index, matrix in enumerate(feats):
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2:
            raise DataError(f"feature matrix #{index} has shape {matrix.shape}; expected [T, D]")
        if stats is None:
            stats = np.zeros((2, matrix.shape[1] + 1), dtype=np.float64)
        elif matrix.shape[1] != stats.shape[1] - 1:
            raise DataError(f"feature matrix #{index} has {matrix.shape[1]} dims, earlier ones "
                            f"{stats.shape[1] - 1}; all features must share one dimension")
        stats[0, :-1] += matrix.sum(axis=0)
        stats[0, -1] += matrix.shape[0]
        stats[1, :-1] += np.square(matrix).sum(axis=0)
    if stats is None or stats[0, -1] < 1:
        raise DataError("no feature frames to compute CMVN statistics from; the training "
                        "split is empty")
    return stats


def save_cmvn(path: Path, stats: np.ndarray) -> None:
    """Write CMVN stats as a binary Kaldi double matrix (readable by ``copy-matrix``)."""
    check_cmvn_shape(np.asarray(stats), Path(path))
    kaldiio.save_mat(str(path), np.asarray(stats, dtype=np.float64))


def load_cmvn(path: Path) -> np.ndarray:
    """Read CMVN stats written by :func:`save_cmvn` or Kaldi's ``compute-cmvn-stats``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: CMVN stats file not found; run the prepare stage first")
    try:
        stats = np.asarray(kaldiio.load_mat(str(path)), dtype=np.float64)
    except Exception as exc:  # kaldiio raises ValueError/KeyError/... on malformed files
        raise DataError(f"{path}: not a Kaldi matrix ({type(exc).__name__}: {exc}); "
                        "re-run the prepare stage") from None
    check_cmvn_shape(stats, path)
    return stats


def check_cmvn_shape(stats: np.ndarray, path: Path) -> None:
    """Kaldi global CMVN stats are [2, D+1] with a frame count >= 1; DataError naming ``path`` otherwise."""
    if stats.ndim != 2 or stats.shape[0] != 2 or stats.shape[1] < 2:
        raise DataError(f"{path}: CMVN stats of shape {stats.shape}; expected Kaldi's "
                        "[2, D+1] (sums + count, sums of squares)")
    if not stats[0, -1] >= 1:
        raise DataError(f"{path}: CMVN frame count {stats[0, -1]!r} < 1; the stats are empty")


def apply_cmvn(feats: np.ndarray, stats: np.ndarray, norm_vars: bool = True) -> np.ndarray:
    """Normalise features with global stats as Kaldi's ``apply-cmvn``; float32 ``[T, D]``."""
    feats = np.asarray(feats, dtype=np.float32)
    stats = np.asarray(stats, dtype=np.float64)
    dim = stats.shape[1] - 1
    if feats.ndim != 2 or feats.shape[1] != dim:
        raise DataError(f"features of shape {feats.shape} do not match CMVN stats for {dim} "
                        "dims; the features and cmvn.mat come from different configs")
    count = stats[0, dim]
    if count < 1.0:
        raise DataError(f"CMVN stats with frame count {count!r}: insufficient statistics")
    mean = stats[0, :dim] / count
    if norm_vars:
        variance = np.maximum(stats[1, :dim] / count - mean * mean, CMVN_VARIANCE_FLOOR)
        scale = 1.0 / np.sqrt(variance)
    else:
        scale = np.ones(dim)
    offset = -mean * scale
    return feats * scale.astype(np.float32) + offset.astype(np.float32)


def splice_skip_pad(feats: np.ndarray, right_context: int = 2, skip: int = 2,
                    pad_multiple: int = 2) -> np.ndarray:
    """The recipe's load-time transform: ``[T, D] -> [T', D * (1 + right_context)]``.

    Row t is frames t..t+right_context concatenated, the last frame standing in for frames
    past the end; rows 0, skip, 2*skip, ... are kept; zero rows are appended up to a multiple
    of ``pad_multiple`` (2 in the recipe: the CNN halves time).  Returns float32.
    """
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise DataError(f"feature matrix of shape {feats.shape}: expected [T >= 1, D]")
    if right_context < 0 or skip < 1 or pad_multiple < 1:
        raise DataError(f"right_context={right_context}, skip={skip}, "
                        f"pad_multiple={pad_multiple}: need right_context >= 0, skip >= 1, "
                        "pad_multiple >= 1")
    num_frames, dim = feats.shape
    kept = np.arange(0, num_frames, skip)
    sources = np.minimum(kept[:, None] + np.arange(right_context + 1)[None, :], num_frames - 1)
    spliced = feats[sources].reshape(len(kept), dim * (right_context + 1))
    remainder = len(kept) % pad_multiple
    if remainder:
        padding = np.zeros((pad_multiple - remainder, spliced.shape[1]), dtype=np.float32)
        spliced = np.concatenate([spliced, padding], axis=0)
    return spliced
