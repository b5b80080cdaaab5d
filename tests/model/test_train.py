"""Training: the loss goes down, the outputs are written, resume skips finished epochs."""

from __future__ import annotations

import json
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from conf_schemas.model import ModelConfig, TrainConfig
from lstm_exp.data.batching import Example
from lstm_exp.data.features import compute_cmvn_stats, save_cmvn
from lstm_exp.errors import ConfigError
from lstm_exp.model import load_checkpoint
from lstm_exp.model.augment import AugmentParams, augment_batch, warp_mel
from lstm_exp.model.train import fit, greedy_ids, train_model

UNITS = ["blank", "UNK", "a", "b", "c", "d"]
TINY_MODEL = ModelConfig(name="tiny", conv_channels=[4, 4], lstm_layers=1, hidden=16,
                         dropout=0.0)


def toy_examples(count: int, seed: int) -> list:
    """Utterances whose frames encode their labels (each label held for 6 frames)."""
    rng = np.random.default_rng(seed)
    codes = rng.standard_normal((len(UNITS), 243)).astype(np.float32)
    examples = []
    for index in range(count):
        labels = rng.integers(2, len(UNITS), size=rng.integers(2, 5))
        feats = np.concatenate([np.repeat(codes[l][None], 6, axis=0) for l in labels])
        feats += 0.3 * rng.standard_normal(feats.shape).astype(np.float32)
        examples.append(Example(f"utt{index:03d}", feats, labels.astype(np.int64)))
    return examples


def tiny_train(**overrides) -> TrainConfig:
    values = dict(epochs=3, batch_size=4, lr=3e-3, weight_decay=0.0, patience=0,
                  num_threads=1, device="cpu", seed=3, bucket_batches=2)
    values.update(overrides)
    return TrainConfig(**values)


def read_log(out_dir: Path) -> list:
    return [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]


def test_loss_decreases_and_outputs_are_written(tmp_path):
    train, dev = toy_examples(24, 0), toy_examples(8, 0)[:8]
    summary = fit(TINY_MODEL, tiny_train(epochs=4), UNITS, train, dev, tmp_path, progress=False)
    log = read_log(tmp_path)
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert log[-1]["train_loss"] < 0.8 * log[0]["train_loss"]
    assert min(r["dev_loss"] for r in log) < log[0]["dev_loss"]
    assert summary["epochs"] == 4 and summary["stopped_by"] == "epochs" and not summary["machine_dependent"]
    assert summary["best_dev_per"] == min(r["dev_per"] for r in log)
    model = load_checkpoint(tmp_path / "model.pt")
    assert model.units == UNITS and model.arch.hidden == 16
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == 4 and "optimizer" in last and "rng" in last


def test_resume_continues_without_redoing_epochs(tmp_path):
    train, dev = toy_examples(16, 1), toy_examples(4, 2)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    fit(TINY_MODEL, tiny_train(epochs=3, augment=True), UNITS, train, dev, straight,
        progress=False)
    fit(TINY_MODEL, tiny_train(epochs=2, augment=True), UNITS, train, dev, resumed,
        progress=False)
    assert [r["epoch"] for r in read_log(resumed)] == [1, 2]
    summary = fit(TINY_MODEL, tiny_train(epochs=3, augment=True, resume=True), UNITS, train,
                  dev, resumed, progress=False)
    assert summary["resumed_from"] == 2 and summary["epochs"] == 3
    assert [r["epoch"] for r in read_log(resumed)] == [1, 2, 3]
    # Restored optimiser, lr and RNG states make the resumed run the uninterrupted one.
    a = torch.load(straight / "last.pt", weights_only=True)["model"]
    b = torch.load(resumed / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_time_budget_truncates_the_epoch(tmp_path):
    train, dev = toy_examples(40, 4), toy_examples(4, 5)
    summary = fit(TINY_MODEL, tiny_train(epochs=50, batch_size=2, max_minutes=0.0005), UNITS,
                  train, dev, tmp_path, progress=False)
    log = read_log(tmp_path)
    assert summary["stopped_by"] == "time" and summary["machine_dependent"] and log[-1]["truncated"]
    assert log[-1]["train_utterances"] < 40 and (tmp_path / "model.pt").is_file()


def test_train_model_reads_a_prepared_folder(tmp_path):
    prepared = tmp_path / "prepared"
    raw = {}
    rng = np.random.default_rng(6)
    for split, count in (("train", 8), ("dev", 3)):
        (prepared / split).mkdir(parents=True)
        feats = {f"{split}{i}": rng.standard_normal((30 + 4 * i, 81)).astype(np.float32)
                 for i in range(count)}
        raw[split] = feats
        kaldiio.save_ark(str(prepared / split / "feats.ark"), feats,
                         scp=str(prepared / split / "feats.scp"))
        (prepared / split / "text").write_text("".join(
            f"{utt} {' '.join(rng.choice(UNITS[2:], size=3))}\n" for utt in feats))
    save_cmvn(prepared / "cmvn.mat", compute_cmvn_stats(raw["train"].values()))
    (prepared / "units").write_text("".join(f"{u} {i}\n" for i, u in enumerate(UNITS)))
    summary = train_model(TINY_MODEL, tiny_train(epochs=1), prepared, tmp_path / "out",
                          progress=False)
    assert summary["train_utterances"] == 8 and summary["dev_utterances"] == 3
    assert load_checkpoint(tmp_path / "out" / "model.pt").arch.input_dim == 243


def test_greedy_ids_collapse_repeats_and_drop_blanks():
    path = torch.tensor([[2, 2, 0, 2, 3, 3, 0, 0]]).T          # [T, B=1]
    log_probs = torch.nn.functional.one_hot(path, 6).float().log()
    assert greedy_ids(log_probs, torch.tensor([8])) == [[2, 2, 3]]
    assert greedy_ids(log_probs, torch.tensor([4])) == [[2, 2]]


def test_augmentation_keeps_energy_and_warps_all_blocks_alike():
    x = torch.randn(2, 10, 243)
    warped = warp_mel(x, torch.tensor([1.0, 1.15]))
    assert torch.allclose(warped[0], x[0])                      # factor 1: unchanged
    energy = [0, 81, 162]
    assert torch.equal(warped[:, :, energy], x[:, :, energy])
    for block in range(3):
        mel = 81 * block + 1
        # Output bin j takes the value at position 1.15 * j of the same block's mel axis.
        assert torch.allclose(warped[1, :, mel + 20], x[1, :, mel + 23], atol=1e-4)
        assert torch.allclose(warped[1, :, mel + 10],
                              0.5 * (x[1, :, mel + 11] + x[1, :, mel + 12]), atol=1e-4)
        assert torch.allclose(warped[1, :, mel + 79], x[1, :, mel + 79])  # clamped edge

    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([10, 4])
    params = AugmentParams(warp_min=1.0, warp_max=1.0, freq_masks=1, freq_mask_width=8,
                           time_masks=1, time_mask_width=3)
    x[1, 4:] = 0.0                                              # padding, as batches have it
    masked = augment_batch(x, lengths, params, generator)
    assert not masked[1, 4:].any()                              # padding stays zero
    assert not torch.equal(masked, x) and torch.equal(x[1, 4:], torch.zeros(6, 243))
    for row in range(2):
        zero_columns = (masked[row] == 0).all(dim=0).nonzero().flatten().tolist()
        bins = [c % 81 for c in zero_columns]
        assert 0 not in bins                                    # energy is not a mel bin
        assert all(bins.count(b) == 3 for b in set(bins))       # same bins in every block
        assert len(set(bins)) <= 8
    zero_frames = (masked[0] == 0).all(dim=1).nonzero().flatten().tolist()
    assert len(zero_frames) <= 3


def test_train_config_lists_every_fault():
    with pytest.raises(ConfigError) as info:
        TrainConfig(epochs=0, lr=-1.0, device="tpu", warp_min=1.2)
    message = str(info.value)
    assert message.splitlines()[0].startswith("invalid train config: 4 problems; the first: train.")
    for key in ("train.epochs", "train.lr", "train.device", "train.warp_min"):
        assert key in message


def _state_digest(path: Path) -> str:
    import hashlib

    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].contiguous().numpy().tobytes())
    return digest.hexdigest()


def _busy_core():
    """A process spinning on the CPU (the other core kept busy), ended by the caller."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


@pytest.mark.parametrize("augment", [False, True], ids=["smoke", "smoke+augment"])
def test_smoke_preset_training_is_bit_identical_under_load(compose_config, tmp_path, augment):
    """Two trainings of the smoke preset's settings in fresh folders, the second with a core kept
    busy, give bit-identical weights: nothing that decides the weights depends on time or load."""
    from omegaconf import OmegaConf

    exp = OmegaConf.to_object(compose_config("experiment=smoke", f"train.augment={str(augment).lower()}",
                                             "train.epochs=2"))
    assert exp.train.max_minutes == 0 and exp.train.num_threads >= 1 and exp.train.device == "cpu"
    model_cfg = ModelConfig(**{**vars(exp.model), "dropout": 0.3})  # a dropout that draws random numbers
    train, dev = toy_examples(16, 0), toy_examples(6, 1)
    first = fit(model_cfg, exp.train, UNITS, train, dev, tmp_path / "a", progress=False)
    busy = _busy_core()
    try:
        second = fit(model_cfg, exp.train, UNITS, train, dev, tmp_path / "b", progress=False)
    finally:
        busy.kill()
        busy.wait()
    assert first["stopped_by"] == second["stopped_by"] == "epochs" and not second["machine_dependent"]
    assert _state_digest(tmp_path / "a" / "model.pt") == _state_digest(tmp_path / "b" / "model.pt")
    assert [{k: v for k, v in r.items() if k not in ("epoch_seconds", "minutes")} for r in read_log(tmp_path / "a")] \
        == [{k: v for k, v in r.items() if k not in ("epoch_seconds", "minutes")} for r in read_log(tmp_path / "b")]
