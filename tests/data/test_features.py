"""Tests of fbank extraction, CMVN and the recipe's splice/skip/pad."""

from __future__ import annotations

import dataclasses
import filecmp
from pathlib import Path

import kaldi_native_fbank as knf
import kaldiio
import numpy as np
import pytest
import soundfile

from conf_schemas.features import FbankConfig
from lstm_exp.data.features import (apply_cmvn, compute_cmvn_stats, compute_fbank,
                                    extract_features, load_cmvn, save_cmvn, splice_skip_pad)
from lstm_exp.errors import ConfigError, DataError

FLT_EPSILON = float(np.finfo(np.float32).eps)


def noise_waveform(num_samples: int, seed: int = 0) -> np.ndarray:
    """Deterministic int16 noise with a slow envelope, so frames differ in energy."""
    rng = np.random.default_rng(seed)
    envelope = 0.2 + np.abs(np.sin(np.linspace(0, 7, num_samples)))
    return np.clip(rng.standard_normal(num_samples) * 3000 * envelope, -32768, 32767).astype(np.int16)


def reference_kaldi_fbank(samples: np.ndarray) -> np.ndarray:
    """Kaldi's FbankComputer written out in numpy for the recipe's options (float64)."""
    frame_length, frame_shift, fft_size, num_bins = 400, 160, 512, 80
    num_frames = 1 + (len(samples) - frame_length) // frame_shift
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(frame_length) / (frame_length - 1))

    def mel(freq):
        return 1127.0 * np.log(1.0 + np.asarray(freq) / 700.0)

    mel_low, mel_high = mel(20.0), mel(8000.0)
    delta = (mel_high - mel_low) / (num_bins + 1)
    bin_mels = mel(np.arange(fft_size // 2) * 16000.0 / fft_size)
    weights = np.zeros((num_bins, fft_size // 2))
    for b in range(num_bins):
        left, center, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
        rising = (bin_mels > left) & (bin_mels <= center)
        falling = (bin_mels > center) & (bin_mels < right)
        weights[b, rising] = (bin_mels[rising] - left) / (center - left)
        weights[b, falling] = (right - bin_mels[falling]) / (right - center)
    out = np.zeros((num_frames, num_bins + 1))
    for t in range(num_frames):
        frame = samples[t * frame_shift:t * frame_shift + frame_length].astype(np.float64)
        frame = frame - frame.mean()
        out[t, 0] = np.log(max(np.dot(frame, frame), FLT_EPSILON))  # raw energy
        frame = np.concatenate([[frame[0] * (1 - 0.97)], frame[1:] - 0.97 * frame[:-1]])
        power = np.abs(np.fft.rfft(frame * window, fft_size)[:fft_size // 2]) ** 2
        out[t, 1:] = np.log(np.maximum(weights @ power, FLT_EPSILON))
    return out


def test_fbank_matches_kaldi_native_fbank_called_directly():
    samples = noise_waveform(16000)
    direct_opts = knf.FbankOptions()
    direct_opts.frame_opts.dither = 0.0
    direct_opts.frame_opts.window_type = "hamming"
    direct_opts.mel_opts.num_bins = 80
    direct_opts.use_energy = True
    direct = knf.OnlineFbank(direct_opts)
    direct.accept_waveform(16000, samples.astype(np.float32).tolist())
    direct.input_finished()
    expected = np.stack([direct.get_frame(t) for t in range(direct.num_frames_ready)])

    feats = compute_fbank(samples, FbankConfig())
    assert feats.dtype == np.float32 and feats.shape == (1 + (16000 - 400) // 160, 81)
    np.testing.assert_array_equal(feats, expected)


def test_fbank_equals_numpy_kaldi_algorithm_with_energy_in_column_0():
    samples = noise_waveform(4000, seed=3)
    feats = compute_fbank(samples, FbankConfig())
    reference = reference_kaldi_fbank(samples)
    np.testing.assert_allclose(feats, reference, rtol=0, atol=2e-3)
    # the energy column really is column 0: it tracks the frames' raw energy
    assert np.corrcoef(feats[:, 0], reference[:, 0])[0, 1] > 0.999


@pytest.mark.parametrize("num_samples", [400, 401, 559, 560, 56000])
def test_frame_count_snip_edges(num_samples):
    feats = compute_fbank(noise_waveform(num_samples), FbankConfig())
    assert feats.shape[0] == 1 + (num_samples - 400) // 160


def test_config_rejects_bad_values_all_at_once():
    with pytest.raises(ConfigError) as info:
        FbankConfig(window_type="hammming", frame_shift_ms=-1, frame_skip=0)
    lines = str(info.value).splitlines()
    assert "3 problems; the first: fbank." in lines[0] and len(lines) == 3
    assert any("window_type" in line and "hamming" in line for line in lines)


def write_sphere_like_corpus(root: Path, count: int, seconds: float = 0.5) -> list[tuple[str, Path]]:
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(count):
        path = root / f"utt{index:03d}.wav"
        soundfile.write(str(path), noise_waveform(int(16000 * seconds) + 37 * index, seed=index),
                        16000, subtype="PCM_16")
        items.append((f"spk{index % 3}_utt{index:03d}", path))
    return items


def test_extract_features_deterministic_across_worker_counts(tmp_path):
    items = write_sphere_like_corpus(tmp_path / "wav", 9)
    frames_1 = extract_features(items, FbankConfig(), tmp_path / "w1", workers=1, progress=False)
    frames_2 = extract_features(items, FbankConfig(), tmp_path / "w2", workers=2, progress=False)
    assert list(frames_1) == [utt for utt, _ in items]
    assert frames_1 == frames_2
    assert filecmp.cmp(tmp_path / "w1" / "feats.ark", tmp_path / "w2" / "feats.ark", shallow=False)
    loaded = kaldiio.load_scp(str(tmp_path / "w2" / "feats.scp"))
    assert list(loaded.keys()) == [utt for utt, _ in items]
    samples, _ = soundfile.read(str(items[4][1]), dtype="int16")
    np.testing.assert_array_equal(loaded[items[4][0]], compute_fbank(samples, FbankConfig()))


def _extract_in_a_loky_worker(items, out_dir):
    return extract_features(items, FbankConfig(), out_dir, workers=2, progress=False)


def test_extract_features_with_workers_inside_a_joblib_worker(tmp_path):
    """A job of a `hydra/launcher=parallel` sweep runs in a loky worker, whose default start method
    ('loky') spawned children do not know: extraction there used to die with BrokenProcessPool."""
    joblib = pytest.importorskip("joblib")
    items = write_sphere_like_corpus(tmp_path / "wav", 4)
    (frames,) = joblib.Parallel(n_jobs=2, backend="loky")(
        [joblib.delayed(_extract_in_a_loky_worker)(items, tmp_path / "out")])
    assert list(frames) == [utt for utt, _ in items]
    assert (tmp_path / "out" / "feats.ark").stat().st_size > 0


KILLED_PARENT = """
import sys
from pathlib import Path
from conf_schemas.features import FbankConfig
from lstm_exp.data.features import extract_features
if __name__ == "__main__":
    items = [(f"u{i:03d}", Path(p)) for i, p in enumerate(sys.argv[2:])]
    extract_features(items, FbankConfig(), Path(sys.argv[1]), workers=2, progress=False)
"""


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_workers_do_not_outlive_a_job_killed_outright(tmp_path):
    """SIGKILL (the OOM killer, a scheduler's hard kill) of a job while its extraction workers
    run: the kernel kills the workers too. They used to wait forever, holding both ends of the
    pool's pipes, with SIGTERM blocked."""
    import os
    import signal
    import subprocess
    import sys
    import time

    items = write_sphere_like_corpus(tmp_path / "wav", 40, seconds=20.0)
    script = tmp_path / "extract.py"
    script.write_text(KILLED_PARENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), *(str(p) for _, p in items)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        workers = [c for c in _children(proc.pid)
                   if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()] if _alive(proc.pid) else []
        if len(workers) == 2:
            break
        time.sleep(0.02)
    assert len(workers) == 2 and proc.poll() is None, "the extraction ended before its workers could be seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    survivors = [w for w in workers if _alive(w)]
    for pid in survivors:  # leave nothing behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"workers {survivors} outlived their killed job"


def test_extract_features_reports_bad_files(tmp_path):
    items = write_sphere_like_corpus(tmp_path, 1)
    short = tmp_path / "short.wav"
    soundfile.write(str(short), noise_waveform(300), 16000, subtype="PCM_16")
    with pytest.raises(DataError, match="short.wav.*shorter than one frame"):
        extract_features(items + [("short", short)], FbankConfig(), tmp_path / "o", workers=1,
                         progress=False)
    wrong_rate = tmp_path / "rate.wav"
    soundfile.write(str(wrong_rate), noise_waveform(8000), 8000, subtype="PCM_16")
    with pytest.raises(DataError, match="rate.wav: sample rate 8000"):
        extract_features([("r", wrong_rate)], FbankConfig(), tmp_path / "o", workers=1,
                         progress=False)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all")
    with pytest.raises(DataError, match="garbage.wav: cannot read audio"):
        extract_features([("g", garbage)], FbankConfig(), tmp_path / "o", workers=1,
                         progress=False)


def test_cmvn_stats_layout_round_trip_and_apply(tmp_path):
    rng = np.random.default_rng(1)
    feats = [rng.normal(loc=5.0, scale=3.0, size=(n, 4)).astype(np.float32) for n in (7, 11, 20)]
    stats = compute_cmvn_stats(iter(feats))
    stacked = np.concatenate(feats).astype(np.float64)
    assert stats.shape == (2, 5) and stats.dtype == np.float64
    np.testing.assert_allclose(stats[0, :4], stacked.sum(axis=0))
    assert stats[0, 4] == 38 and stats[1, 4] == 0
    np.testing.assert_allclose(stats[1, :4], (stacked ** 2).sum(axis=0))

    save_cmvn(tmp_path / "cmvn.mat", stats)
    loaded = load_cmvn(tmp_path / "cmvn.mat")
    np.testing.assert_array_equal(loaded, stats)

    normalised = np.concatenate([apply_cmvn(f, loaded) for f in feats])
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(normalised.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalised.var(axis=0), 1.0, atol=1e-4)
    mean_only = np.concatenate([apply_cmvn(f, loaded, norm_vars=False) for f in feats])
    np.testing.assert_allclose(mean_only.var(axis=0), stacked.var(axis=0), rtol=1e-4)


def test_cmvn_constant_dimension_uses_variance_floor():
    feats = np.ones((5, 2), dtype=np.float32)
    feats[:, 1] = np.arange(5)
    out = apply_cmvn(feats, compute_cmvn_stats([feats]))
    assert np.all(np.isfinite(out)) and np.all(out[:, 0] == 0.0)


def test_load_cmvn_rejects_wrong_shape(tmp_path):
    kaldiio.save_mat(str(tmp_path / "bad.mat"), np.zeros((3, 4)))
    with pytest.raises(DataError, match=r"bad\.mat: CMVN stats of shape \(3, 4\)"):
        load_cmvn(tmp_path / "bad.mat")
    with pytest.raises(DataError, match="missing.mat: CMVN stats file not found"):
        load_cmvn(tmp_path / "missing.mat")
    with pytest.raises(DataError, match="do not match CMVN stats for 3 dims"):
        apply_cmvn(np.zeros((2, 4)), np.ones((2, 4)))


def test_splice_skip_pad_by_hand():
    # 5 frames of 2 dims; frame t = [t, 10 t]
    feats = np.array([[t, 10 * t] for t in range(5)], dtype=np.float32)
    out = splice_skip_pad(feats, right_context=2, skip=2)
    expected = np.array([
        [0, 0, 1, 10, 2, 20],      # t = 0: frames 0, 1, 2
        [2, 20, 3, 30, 4, 40],     # t = 2: frames 2, 3, 4
        [4, 40, 4, 40, 4, 40],     # t = 4: frame 4, then the last frame repeated
        [0, 0, 0, 0, 0, 0],        # zero row: 3 kept frames padded to an even 4
    ], dtype=np.float32)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32


def test_splice_skip_pad_even_count_gets_no_padding_and_single_frame():
    feats = np.array([[t, -t] for t in range(4)], dtype=np.float32)
    out = splice_skip_pad(feats)
    np.testing.assert_array_equal(out, [[0, 0, 1, -1, 2, -2], [2, -2, 3, -3, 3, -3]])
    single = splice_skip_pad(np.array([[7.0, 8.0]]))
    np.testing.assert_array_equal(single, [[7, 8, 7, 8, 7, 8], [0, 0, 0, 0, 0, 0]])


def test_splice_skip_pad_recipe_shape():
    feats = np.random.default_rng(0).standard_normal((349, 81)).astype(np.float32)
    out = splice_skip_pad(feats)
    assert out.shape == (176, 243)  # ceil(349 / 2) = 175 kept, padded to 176
    np.testing.assert_array_equal(out[10, 81:162], feats[21])
    with pytest.raises(DataError):
        splice_skip_pad(np.zeros((0, 81)))


def test_fbank_config_is_a_plain_dataclass():
    fields = {f.name: f.default for f in dataclasses.fields(FbankConfig)}
    assert fields["dither"] == 0.0 and fields["window_type"] == "hamming"
    assert FbankConfig().spliced_dim == 243
