"""Train the CTC model on a prepared data folder, with dev-driven lr halving and early stopping.

CTC loss (blank 0, ``zero_infinity``), Adam, gradient clipping; training batches are formed by
length inside random groups (little padding, still shuffled); optional mel-warp + SpecAugment
(:mod:`lstm_exp.model.augment`).  After every epoch the dev set is scored (CTC loss and greedy
PER: argmax, collapse repeats, drop blanks).  An epoch *improves* when dev PER or dev loss
reaches a new best; otherwise the learning rate is halved (``lr_halving``) and after
``patience`` such epochs in a row training stops.  The best model is the one with the lowest
dev PER (ties: lower loss).

Training is deterministic: a fixed number of epochs, seeded shuffling, augmentation and dropout,
``torch.use_deterministic_algorithms`` and a fixed CPU thread count (``train.num_threads``) give
bit-identical weights for the same config on any machine with the same thread count (and the
same torch build and CPU instruction set).  ``max_minutes`` is an optional cap on the
wall-clock time of one invocation (off by default): the epoch running when it is reached is cut
short, scored and logged with ``"truncated": true``; the summary then says
``stopped_by: time`` and ``machine_dependent: true`` and a warning says so, since how far
training got depends on the machine's speed and load.

Writes into ``out_dir``:

* ``model.pt``: the best model (:func:`save_checkpoint`: weights, arch, units, meta);
* ``last.pt``: model, optimiser, lr-halving state, epoch, RNG states and bookkeeping after
  every epoch (``torch.load(weights_only=True)``-loadable), from which ``resume=true`` (the
  default) continues without redoing finished epochs; a ``last.pt`` it cannot continue from
  (truncated, another network) is reported with a warning naming it, and training starts afresh;
* ``train_log.jsonl``: one JSON object per epoch.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from rapidfuzz.distance import Levenshtein
from tqdm import tqdm

from conf_schemas.model import ModelConfig, TrainConfig
from lstm_exp.data.batching import plan_batches
from lstm_exp.errors import ConfigError, DataError
from lstm_exp.model.augment import AugmentParams, augment_batch
from lstm_exp.model.checkpoint import save_checkpoint
from lstm_exp.model.ctc import CTCModel, ModelArch

log = logging.getLogger(__name__)

TRAIN_STATE_TAG = "lstm_exp.train_state/1"
BEST_NAME = "model.pt"
LAST_NAME = "last.pt"
LOG_NAME = "train_log.jsonl"


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but torch sees no GPU; write "
                          "train.device=auto or cpu")
    return torch.device(name)


def greedy_ids(log_probs: torch.Tensor, out_lengths: torch.Tensor) -> List[List[int]]:
    """Greedy CTC decoding of ``[T, B, C]`` to class ids: argmax, collapse repeats, drop 0."""
    from lstm_exp.decode.greedy import collapse_best_path

    best = log_probs.argmax(dim=2).cpu().numpy()                   # [T, B]
    return [ids.tolist() for ids in collapse_best_path(best, out_lengths.cpu().numpy(), blank_id=0)]


class LrHalving:
    """Halve every parameter group's learning rate (not below ``min_lr``) on request."""

    def __init__(self, optimizer: torch.optim.Optimizer, min_lr: float) -> None:
        self.optimizer = optimizer
        self.min_lr = min_lr
        self.halvings = 0

    def halve(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = max(group["lr"] * 0.5, self.min_lr)
        self.halvings += 1

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> Dict[str, Any]:
        return {"min_lr": self.min_lr, "halvings": self.halvings, "lr": self.lr}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.halvings = int(state["halvings"])
        for group in self.optimizer.param_groups:
            group["lr"] = float(state["lr"])


class _Batches:
    """Training batches: shuffled examples, grouped, each group batched by the batch planner's
    ``sorted`` mode (length-sorted, padded to each batch's longest), batches shuffled."""

    def __init__(self, examples: Sequence[Any], batch_size: int, bucket_batches: int) -> None:
        self.examples = examples
        self.batch_size = batch_size
        group = bucket_batches * batch_size if bucket_batches > 0 else len(examples)
        self.group_size = max(group, batch_size)

    def __len__(self) -> int:
        full, rest = divmod(len(self.examples), self.group_size)
        return full * math.ceil(self.group_size / self.batch_size) + \
            math.ceil(rest / self.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[Any]:
        order = torch.randperm(len(self.examples), generator=generator).tolist()
        for start in range(0, len(order), self.group_size):
            group = [self.examples[i] for i in order[start:start + self.group_size]]
            batches = plan_batches(group, self.batch_size, "sorted")
            for index in torch.randperm(len(batches), generator=generator).tolist():
                yield batches[index]


def _tensors(batch: Any, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor,
                                                        torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(batch.x), dtype=torch.float32)
    lengths = torch.as_tensor(np.asarray(batch.lengths), dtype=torch.int64)
    labels = [torch.as_tensor(np.asarray(lab), dtype=torch.int64) for lab in batch.labels]
    targets = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
    target_lengths = torch.tensor([len(lab) for lab in labels], dtype=torch.int64)
    return x.to(device), lengths, targets, target_lengths


def evaluate(model: CTCModel, batches: Sequence[Any], device: torch.device,
             ctc: torch.nn.CTCLoss) -> Dict[str, float]:
    """Dev CTC loss (mean over utterances of loss / label length) and greedy PER (%)."""
    model.eval()
    loss_sum, utterances, errors, ref_tokens = 0.0, 0, 0, 0
    with torch.no_grad():
        for batch in batches:
            x, lengths, targets, target_lengths = _tensors(batch, device)
            log_probs = model(x)
            out_lengths = model.output_lengths(lengths)
            losses = ctc(log_probs, targets.to(device), out_lengths.to(device),
                         target_lengths.to(device)).cpu()
            loss_sum += float((losses / target_lengths.clamp(min=1)).sum())
            utterances += len(target_lengths)
            for hyp, ref in zip(greedy_ids(log_probs, out_lengths), batch.labels):
                ref_ids = [int(t) for t in ref]
                errors += Levenshtein.distance(hyp, ref_ids)
                ref_tokens += len(ref_ids)
    return {"loss": loss_sum / max(utterances, 1),
            "per": 100.0 * errors / max(ref_tokens, 1)}


def _rng_state(generator: torch.Generator) -> Dict[str, Any]:
    """Every RNG the training touches, as tensors and plain lists (weights_only-loadable)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "data": generator.get_state(),
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: Dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_data(prepared_dir: Path, units_path: Path, progress: bool):
    from lstm_exp.data.batching import load_split, load_units

    if not units_path.is_file():
        raise DataError(f"{units_path}: units file missing; run the prepare stage first")
    units = load_units(units_path)
    train = load_split(prepared_dir, "train", units, progress)
    dev = load_split(prepared_dir, "dev", units, progress)
    for split, examples in (("train", train), ("dev", dev)):
        if not examples:
            raise DataError(f"{prepared_dir / split}: no utterances; the {split} split must not "
                            "be empty")
    return units, train, dev


def _arch_for(model_cfg: ModelConfig, input_dim: int, num_classes: int) -> ModelArch:
    return ModelArch(input_dim=input_dim, conv_channels=list(model_cfg.conv_channels),
                     lstm_layers=model_cfg.lstm_layers, hidden=model_cfg.hidden,
                     num_classes=num_classes, layout=model_cfg.layout,
                     dropout=float(model_cfg.dropout))


def _plain_config(cfg: Any) -> Dict[str, Any]:
    try:
        values = asdict(cfg)
    except TypeError:  # an OmegaConf DictConfig
        from omegaconf import OmegaConf

        values = OmegaConf.to_container(cfg, resolve=True)
    return json.loads(json.dumps(values, default=str))


def train_model(model_cfg: ModelConfig, train_cfg: TrainConfig, prepared_dir: Path,
                out_dir: Path, progress: bool = True) -> Dict[str, Any]:
    """Train on ``prepared_dir`` (train + dev splits), write ``out_dir``; return a summary.

    Summary keys: ``epochs`` (finished epochs, all invocations), ``best_epoch``,
    ``best_dev_loss``, ``best_dev_per``, ``minutes`` (this invocation), ``params``,
    ``device``, ``stopped_by`` (``epochs`` | ``early_stop`` | ``time``), ``machine_dependent``
    (true when ``max_minutes`` cut training short, now or in a resumed run, or on a GPU) and
    ``machine_dependent_because``, ``resumed_from``.
    """
    prepared_dir = Path(prepared_dir)
    units, train_set, dev_set = _load_data(prepared_dir, prepared_dir / "units", progress)
    return fit(model_cfg, train_cfg, units, train_set, dev_set, out_dir, progress)


def fit(model_cfg: ModelConfig, train_cfg: TrainConfig, units: Sequence[str],
        train_set: Sequence[Any], dev_set: Sequence[Any], out_dir: Path,
        progress: bool = True) -> Dict[str, Any]:
    """:func:`train_model` on examples already loaded (``Example(utt_id, feats, labels)``)."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # CUDA's CTC loss backward has no deterministic kernel: there, warn instead of failing
    on_cpu = resolve_device(train_cfg.device).type == "cpu"
    torch.use_deterministic_algorithms(True, warn_only=not on_cpu)
    try:
        summary = _fit(model_cfg, train_cfg, units, train_set, dev_set, out_dir, progress)
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=warn_only)
    reasons = []
    if summary.pop("cut_by_time"):
        reasons.append(f"train.max_minutes={train_cfg.max_minutes:g} cut training short "
                       "(train_stopped_by=time)")
        log.warning("train.max_minutes=%g stopped training in epoch %d of %d: the weights depend "
                    "on this machine's speed and load (train_stopped_by=time); set "
                    "train.max_minutes=0 for a result any machine reproduces",
                    train_cfg.max_minutes, summary["epochs"], train_cfg.epochs)
    if not on_cpu:
        reasons.append(f"trained on {summary['device']} (kernels without a deterministic variant)")
    summary["machine_dependent"] = bool(reasons)
    summary["machine_dependent_because"] = "; ".join(reasons)
    return summary


@dataclass
class _Training:
    """What every epoch of one training shares: the network, its optimiser and loss, the data RNG."""

    cfg: TrainConfig
    units: Sequence[str]
    model: CTCModel
    optimizer: torch.optim.Optimizer
    halving: LrHalving
    ctc: torch.nn.CTCLoss
    augment: Optional[AugmentParams]
    device: torch.device
    data_rng: torch.Generator
    #: what model.pt records besides the weights (the model and train configs)
    meta: Dict[str, Any]


@dataclass
class _Clock:
    """The optional ``max_minutes`` cap: when an epoch must stop to leave time for scoring dev."""

    started: float
    budget_s: float
    dev_frames: int
    #: the last dev scoring's seconds (None before the first)
    dev_seconds: Optional[float] = None

    def out_of_time(self, epoch_start: float, frames_done: int) -> bool:
        if self.budget_s <= 0:
            return False
        elapsed = time.monotonic() - self.started
        # Reserve time for scoring dev: measured, or estimated at a third of the
        # training cost per frame (forward only).
        reserve = self.dev_seconds if self.dev_seconds is not None else \
            (time.monotonic() - epoch_start) / max(frames_done, 1) * self.dev_frames / 3
        return elapsed + reserve >= self.budget_s


def _fit(model_cfg: ModelConfig, train_cfg: TrainConfig, units: Sequence[str],
         train_set: Sequence[Any], dev_set: Sequence[Any], out_dir: Path,
         progress: bool) -> Dict[str, Any]:
    """The epoch loop: train an epoch, score dev, keep the best, halve the lr or stop, log."""
    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _set_up(model_cfg, train_cfg, units, train_set, dev_set)
    last_path, log_path = out_dir / LAST_NAME, out_dir / LOG_NAME
    book, resumed_from = _start_or_resume(run, last_path, log_path)
    dev_batches = plan_batches(dev_set, train_cfg.batch_size, "sorted")
    train_batches = _Batches(train_set, train_cfg.batch_size, train_cfg.bucket_batches)
    clock = _Clock(started, train_cfg.max_minutes * 60.0, sum(int(ex.feats.shape[0]) for ex in dev_set))

    while not book["stopped"]:
        epoch = book["epoch"] + 1
        if epoch > train_cfg.epochs:
            book["stopped"] = "epochs"
            break
        epoch_start = time.monotonic()
        loss_total, seen, truncated = _train_epoch(run, train_batches, epoch, clock, epoch_start, progress)
        dev_start = time.monotonic()
        scores = evaluate(run.model, dev_batches, run.device, run.ctc)
        clock.dev_seconds = time.monotonic() - dev_start
        step = _after_epoch(run, book, scores, epoch, truncated, out_dir)
        record = {"epoch": epoch, "train_loss": loss_total / max(seen, 1), "train_utterances": seen,
                  "dev_loss": scores["loss"], "dev_per": scores["per"], **step, "truncated": truncated,
                  "epoch_seconds": round(time.monotonic() - epoch_start, 3),
                  "minutes": round((time.monotonic() - started) / 60.0, 4)}
        _log_epoch(run, book, record, log_path, last_path, progress)
    return {"epochs": book["epoch"], "best_epoch": book["best_epoch"],
            "best_dev_loss": book["best_loss"], "best_dev_per": book["best_per"],
            "minutes": (time.monotonic() - started) / 60.0, "params": run.model.num_parameters(),
            "device": str(run.device), "stopped_by": book["stopped"],
            "cut_by_time": bool(book.get("cut_by_time")), "resumed_from": resumed_from,
            "train_utterances": len(train_set), "dev_utterances": len(dev_set)}


def _set_up(model_cfg: ModelConfig, train_cfg: TrainConfig, units: Sequence[str],
            train_set: Sequence[Any], dev_set: Sequence[Any]) -> _Training:
    """Threads, seeds (before the network's initialisation draws from them), network, optimiser."""
    if train_cfg.num_threads > 0:
        torch.set_num_threads(train_cfg.num_threads)
    device = resolve_device(train_cfg.device)
    _seed_everything(train_cfg.seed)
    data_rng = torch.Generator().manual_seed(train_cfg.seed)
    if not train_set or not dev_set:
        raise DataError(f"training needs utterances in train ({len(train_set)}) and dev "
                        f"({len(dev_set)}); check the prepared data")

    arch = _arch_for(model_cfg, int(train_set[0].feats.shape[1]), len(units))
    model = CTCModel(arch).to(device)
    model.units = list(units)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg.lr,
                                 weight_decay=train_cfg.weight_decay)
    augment = AugmentParams(train_cfg.warp_min, train_cfg.warp_max, train_cfg.freq_masks,
                            train_cfg.freq_mask_width, train_cfg.time_masks,
                            train_cfg.time_mask_width) if train_cfg.augment else None
    meta = {"model_config": _plain_config(model_cfg), "train_config": _plain_config(train_cfg)}
    return _Training(train_cfg, units, model, optimizer, LrHalving(optimizer, train_cfg.min_lr),
                     torch.nn.CTCLoss(blank=0, reduction="none", zero_infinity=True), augment, device,
                     data_rng, meta)


def _start_or_resume(run: _Training, last_path: Path, log_path: Path) -> Tuple[Dict[str, Any], int]:
    """(the bookkeeping to start from, the epoch resumed from): ``last.pt``'s when training can
    continue from it (``train.resume``), else a fresh start (an earlier log removed)."""
    book = {"epoch": 0, "best_per": math.inf, "best_loss": math.inf, "best_epoch": 0,
            "min_per": math.inf, "min_loss": math.inf, "bad_epochs": 0, "stopped": "",
            "cut_by_time": False}
    state = _resumable_state(last_path, run.model.arch, run.units) \
        if run.cfg.resume and last_path.is_file() else None
    if state is not None:
        book = _resume(state, run.model, run.optimizer, run.halving, run.data_rng)
        _keep_log_until(log_path, book["epoch"])
        return book, book["epoch"]
    if log_path.exists():
        log_path.unlink()
    return book, 0


def _train_epoch(run: _Training, train_batches: "_Batches", epoch: int, clock: _Clock, epoch_start: float,
                 progress: bool) -> Tuple[float, int, bool]:
    """One pass over the training batches: (summed loss x utterances, utterances, cut by time)."""
    run.model.train()
    loss_total, seen, frames_done = 0.0, 0, 0
    bar = tqdm(train_batches.epoch(run.data_rng), total=len(train_batches), file=sys.stderr,
               disable=not progress, desc=f"epoch {epoch}", leave=False)
    try:
        for batch in bar:
            loss, utterances, frames = _train_step(run, batch)
            loss_total += loss * utterances
            seen += utterances
            frames_done += frames
            bar.set_postfix(loss=f"{loss_total / seen:.3f}")
            if clock.out_of_time(epoch_start, frames_done):
                return loss_total, seen, True
        return loss_total, seen, False
    finally:
        bar.close()


def _train_step(run: _Training, batch: Any) -> Tuple[float, int, int]:
    """One optimiser step on a batch: (its mean loss, its utterances, its frames)."""
    device = run.device
    x, lengths, targets, target_lengths = _tensors(batch, device)
    if run.augment is not None:
        x = augment_batch(x, lengths, run.augment, run.data_rng)
    log_probs = run.model(x)
    losses = run.ctc(log_probs, targets.to(device), run.model.output_lengths(lengths).to(device),
                     target_lengths.to(device))
    loss = (losses / target_lengths.clamp(min=1).to(device)).mean()
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.optimizer.step()
    return loss.item(), len(target_lengths), int(lengths.sum())


def _after_epoch(run: _Training, book: Dict[str, Any], scores: Dict[str, float], epoch: int, truncated: bool,
                 out_dir: Path) -> Dict[str, Any]:
    """Early stopping's step on the dev scores: the best model saved, the lr halved after an epoch
    that improved nothing, why training stops (if it does); returns the log record's lr fields."""
    improved_per = scores["per"] < book["min_per"]
    improved_loss = scores["loss"] < book["min_loss"]
    book["min_per"] = min(book["min_per"], scores["per"])
    book["min_loss"] = min(book["min_loss"], scores["loss"])
    is_best = (scores["per"], scores["loss"]) < (book["best_per"], book["best_loss"])
    if is_best:
        book.update(best_per=scores["per"], best_loss=scores["loss"], best_epoch=epoch)
        save_checkpoint(out_dir / BEST_NAME, run.model, run.units, epoch=epoch,
                        dev_loss=scores["loss"], dev_per=scores["per"], **run.meta)
    lr_used = run.halving.lr
    if improved_per or improved_loss:
        book["bad_epochs"] = 0
    else:
        book["bad_epochs"] += 1
        if run.cfg.lr_halving:
            run.halving.halve()
    book["epoch"] = epoch
    if truncated:
        book["stopped"] = "time"
        book["cut_by_time"] = True
    elif run.cfg.patience and book["bad_epochs"] >= run.cfg.patience:
        book["stopped"] = "early_stop"
    elif epoch >= run.cfg.epochs:
        book["stopped"] = "epochs"
    return {"lr": lr_used, "next_lr": run.halving.lr, "best": is_best, "improved": improved_per or improved_loss}


def _log_epoch(run: _Training, book: Dict[str, Any], record: Dict[str, Any], log_path: Path, last_path: Path,
               progress: bool) -> None:
    """The epoch's line in ``train_log.jsonl``, then ``last.pt`` (what a resumed run continues from)."""
    with open(log_path, "a", encoding="utf-8") as log_file:
        log_file.write(json.dumps(record) + "\n")
    _save_last(last_path, run.model, run.optimizer, run.halving, run.data_rng, book, run.units)
    if progress:
        tqdm.write(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, dev loss "
                   f"{record['dev_loss']:.4f}, dev PER {record['dev_per']:.2f}%"
                   f"{' (best)' if record['best'] else ''}", file=sys.stderr)


def _save_last(path: Path, model: CTCModel, optimizer: torch.optim.Optimizer,
               halving: LrHalving, generator: torch.Generator, book: Dict[str, Any],
               units: Sequence[str]) -> None:
    state = {"format": TRAIN_STATE_TAG, "epoch": book["epoch"], "arch": model.arch.to_dict(),
             "units": list(units),
             "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "scheduler": halving.state_dict(),
             "rng": _rng_state(generator), "book": dict(book)}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _resumable_state(path: Path, arch: ModelArch, units: Sequence[str]) -> Optional[Dict[str, Any]]:
    """The training state in ``path`` if training can continue from it; otherwise (truncated,
    unreadable, another format, another network) a warning naming ``path`` and None: training
    then starts afresh and overwrites it, rather than stopping a rerun."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = (str(exc).splitlines() or [""])[0][:200]
        problem = f"it is unreadable ({type(exc).__name__}: {detail})"
    else:
        if not isinstance(state, dict) or state.get("format") != TRAIN_STATE_TAG:
            problem = "it is not a training state written by lstm_exp"
        elif state["arch"] != arch.to_dict() or list(state["units"]) != list(units):
            problem = (f"it was trained with arch {state['arch']} and {len(state['units'])} units, the config "
                       f"now gives {arch.to_dict()} and {len(units)} units")
        else:
            return state
    log.warning("train: cannot resume from %s: %s; training starts afresh (finished epochs of that "
                "run are redone)", path, problem)
    return None


def _keep_log_until(log_path: Path, epoch: int) -> None:
    """Drop the log lines of epochs after ``epoch`` (an interrupt between logging an epoch and
    saving its state), so that the resumed run logs each epoch once."""
    if not log_path.is_file():
        return
    lines = log_path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] <= epoch]
    if kept != lines:
        log_path.write_text("".join(kept), encoding="utf-8")


def _resume(state: Dict[str, Any], model: CTCModel, optimizer: torch.optim.Optimizer, halving: LrHalving,
            generator: torch.Generator) -> Dict[str, Any]:
    """Restore model, optimiser, lr halving and RNGs from a state :func:`_resumable_state` accepted."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    halving.load_state_dict(state["scheduler"])
    _restore_rng(state["rng"], generator)
    book = dict(state["book"])
    # A run that ended because of epochs or the time cap may go on; early stopping stands.
    if book["stopped"] in ("epochs", "time", "time_budget"):
        book["stopped"] = ""
    return book
