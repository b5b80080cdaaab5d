"""Compare CTC decoders on the same posteriors: decode time and PER.

Decoders: greedy (``lstm_exp.decode.GreedyDecoder``), flashlight beam without LM and with the
bigram LM (``lstm_exp.decode.BeamDecoder``), and the NumPy prefix beam search with the same LM
(``benchmarks/prefix_beam_numpy.py``, the baseline).  PER is the honest figure of
``lstm_exp.metrics.errors.score_utterances``.

Input, either:

* ``--npz FILE --arpa FILE``: an ``.npz`` with ``log_probs`` float [T, N, C] (time-major, all
  utterances padded to T), ``lengths`` int [N], ``refs`` str [N] (phones joined by spaces),
  ``units`` str [C] (``blank``, ``UNK``, phones) and optionally ``ids`` str [N];
* ``--synthetic N``: peaky random CTC posteriors for N utterances of ``--frames`` frames over
  ``--classes`` classes, made from phone sequences drawn from a random Markov chain; a bigram
  ARPA of that chain (estimated from sampled sentences) is written beside them.  ``--save-npz``
  keeps them.

* ``--run-dir JOB --prepared DIR``: the log-probs a job saved with ``infer.save_log_probs=true``
  (``JOB/log_probs.npz``, one ``[T_i, C]`` array per utterance) and the prepared data it used
  (references from ``DIR/<split>/text``, ``DIR/units``, ``DIR/lm_phone_bg.arpa``).

Examples::

    python benchmarks/bench_beam.py --synthetic 200 --frames 190
    python -m lstm_exp infer.save_log_probs=true     # then, with the job folder and cache entry:
    python benchmarks/bench_beam.py --run-dir outputs/<day>/<time> --prepared cache/prepare/<key>
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefix_beam_numpy import DenseBigramLM, decode_batch  # noqa: E402

from lstm_exp.decode import BeamDecoder, GreedyDecoder  # noqa: E402
from lstm_exp.decode.beam import DEFAULT_BEAM_SIZE_TOKEN, DEFAULT_BEAM_THRESHOLD  # noqa: E402
from lstm_exp.metrics.errors import score_utterances  # noqa: E402


def synthetic_posteriors(
    num_utts: int, frames: int, num_classes: int, seed: int, confusion_rate: float = 0.2
) -> Dict[str, np.ndarray]:
    """Peaky CTC log-probs from Markov-chain phone sequences; returns the .npz fields plus the chain."""
    rng = np.random.default_rng(seed)
    num_phones = num_classes - 2
    units = ["blank", "UNK"] + [f"p{i:02d}" for i in range(num_phones)]
    start = rng.dirichlet(np.full(num_phones, 0.5))
    transitions = rng.dirichlet(np.full(num_phones, 0.3), size=num_phones)
    log_probs = np.empty((frames, num_utts, num_classes), dtype=np.float32)
    lengths = rng.integers(int(frames * 0.75), frames + 1, size=num_utts)
    refs: List[str] = []
    for b in range(num_utts):
        targets: List[int] = []  # per-frame class ids
        phones: List[int] = []
        phone = rng.choice(num_phones, p=start)
        while len(targets) < lengths[b]:
            if phones and phone == phones[-1] or rng.random() < 0.5:
                targets.extend([0] * int(rng.integers(1, 3)))
            phones.append(phone)
            targets.extend([phone + 2] * int(rng.integers(1, 4)))
            phone = rng.choice(num_phones, p=transitions[phone])
        targets = targets[: lengths[b]]
        # the reference is what the kept frames spell (the last phone may be cut short)
        collapsed = [k for i, k in enumerate(targets) if k != 0 and (i == 0 or k != targets[i - 1])]
        refs.append(" ".join(units[k] for k in collapsed))
        logits = rng.normal(0.0, 1.0, size=(frames, num_classes))
        logits[:, 1] -= 3.0  # UNK: never a target, rarely likely
        padded = np.zeros(frames, dtype=np.int64)
        padded[: len(targets)] = targets
        logits[np.arange(frames), padded] += 5.0
        confused = rng.random(frames) < confusion_rate
        rivals = rng.integers(2, num_classes, size=frames)
        logits[confused, rivals[confused]] += 4.5 + rng.normal(0.0, 1.0, size=int(confused.sum()))
        logits -= logits.max(axis=1, keepdims=True)
        log_probs[:, b] = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return {
        "log_probs": log_probs, "lengths": lengths, "refs": np.array(refs), "units": np.array(units),
        "ids": np.array([f"synth{b:04d}" for b in range(num_utts)]),
        "start": start, "transitions": transitions,
    }


def write_chain_arpa(path: Path, units: Sequence[str], start: np.ndarray, transitions: np.ndarray,
                     seed: int, sentences: int = 3000, sentence_len: int = 60) -> None:
    """Estimate an add-0.1 bigram ARPA (all bigrams listed) from sentences sampled from the chain."""
    rng = np.random.default_rng(seed + 1)
    phones = list(units[2:])
    n = len(phones)
    counts = np.full((n + 1, n + 1), 0.1)  # rows: phones + <s>; cols: phones + </s>
    for _ in range(sentences):
        previous = n
        phone = rng.choice(n, p=start)
        for _ in range(int(rng.integers(sentence_len // 2, sentence_len))):
            counts[previous, phone] += 1
            previous = phone
            phone = rng.choice(n, p=transitions[phone])
        counts[previous, n] += 1
    cond = np.log10(counts / counts.sum(axis=1, keepdims=True))
    uni = np.log10(counts[:, :n].sum(axis=0) / counts[:, :n].sum())
    lines = ["\\data\\", f"ngram 1={n + 3}", f"ngram 2={(n + 1) * (n + 1)}", "", "\\1-grams:",
             "-99\t<s>\t0", f"{math.log10(1.0 / sentence_len):.6f}\t</s>", "-10\t<unk>"]
    lines += [f"{uni[i]:.6f}\t{phones[i]}\t0" for i in range(n)]
    lines += ["", "\\2-grams:"]
    names_in, names_out = phones + ["<s>"], phones + ["</s>"]
    for h in range(n + 1):
        for w in range(n + 1):
            lines.append(f"{cond[h, w]:.6f}\t{names_in[h]} {names_out[w]}")
    lines += ["", "\\end\\", ""]
    path.write_text("\n".join(lines))


def posteriors_of_run(run_dir: Path, prepared: Path, split: str) -> Dict[str, np.ndarray]:
    """The .npz fields from a job's per-utterance log-probs and its prepared data."""
    from lstm_exp.data.batching import load_units

    units = load_units(prepared / "units")
    refs = dict(line.split(None, 1) for line in (prepared / split / "text").read_text().splitlines())
    with np.load(run_dir / "log_probs.npz", allow_pickle=False) as archive:
        per_utt = {k: archive[k] for k in archive.files}
    ids = list(per_utt)
    frames = max(v.shape[0] for v in per_utt.values())
    log_probs = np.full((frames, len(ids), len(units)), -1e4, dtype=np.float32)
    log_probs[:, :, 0] = 0.0  # padding frames: blank with probability 1 (beyond each length anyway)
    for b, utt in enumerate(ids):
        log_probs[: per_utt[utt].shape[0], b] = per_utt[utt]
    return {"log_probs": log_probs, "lengths": np.array([per_utt[u].shape[0] for u in ids]),
            "refs": np.array([refs[u].strip() for u in ids]), "units": np.array(units), "ids": np.array(ids)}


REPEATS = 3


def timed(fn, *args) -> Tuple[List[List[str]], float]:
    """One untimed warm-up pass, then the median wall time of ``REPEATS`` passes (single thread:
    every decoder here runs on the calling thread)."""
    result = fn(*args)
    seconds = []
    for _ in range(REPEATS):
        begin = time.perf_counter()
        result = fn(*args)
        seconds.append(time.perf_counter() - begin)
    return result, float(np.median(seconds))


def in_batches(decoder, log_probs: np.ndarray, lengths: np.ndarray, batch: int) -> List[List[str]]:
    out: List[List[str]] = []
    for first in range(0, log_probs.shape[1], batch):
        out.extend(decoder.decode(log_probs[:, first: first + batch], lengths[first: first + batch]))
    return out


def per_of(ids: Sequence[str], refs: Sequence[str], hyps: Sequence[Sequence[str]]) -> float:
    return score_utterances({u: r.split() for u, r in zip(ids, refs)}, dict(zip(ids, hyps))).per


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--npz", type=Path, help="saved log-probs (see module doc)")
    source.add_argument("--synthetic", type=int, metavar="N", help="make N synthetic utterances")
    source.add_argument("--run-dir", type=Path, help="a job folder with log_probs.npz (see module doc)")
    parser.add_argument("--prepared", type=Path, help="the prepared data of --run-dir (cache/prepare/<key>)")
    parser.add_argument("--split", default="dev", help="split of --run-dir's references")
    parser.add_argument("--arpa", type=Path, help="bigram ARPA (required with --npz)")
    parser.add_argument("--frames", type=int, default=190)
    parser.add_argument("--classes", type=int, default=41)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-npz", type=Path, help="write the synthetic posteriors here")
    parser.add_argument("--beam-width", type=int, default=10)
    parser.add_argument("--lm-weight", type=float, default=0.5, help="the recipe's lm_alpha (ln units)")
    parser.add_argument("--beam-size-token", type=int, default=DEFAULT_BEAM_SIZE_TOKEN,
                        help="flashlight: classes tried per frame (default %(default)s, the presets' "
                             "pre-beam; 0 tries all)")
    parser.add_argument("--beam-threshold", type=float, default=DEFAULT_BEAM_THRESHOLD,
                        help="flashlight: drop hypotheses this far (ln) below the best")
    parser.add_argument("--batch", type=int, default=16, help="utterances per decode() call")
    parser.add_argument("--baseline-utts", type=int, default=None,
                        help="run the slow NumPy baseline on the first K utterances only (default all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per decoder (median reported)")
    args = parser.parse_args(argv)
    args.beam_size_token = args.beam_size_token or None  # 0: all classes
    global REPEATS
    REPEATS = args.repeats

    workdir = tempfile.TemporaryDirectory()
    if args.synthetic is not None:
        data = synthetic_posteriors(args.synthetic, args.frames, args.classes, args.seed)
        arpa = Path(workdir.name) / "synthetic_bigram.arpa"
        write_chain_arpa(arpa, list(data["units"]), data["start"], data["transitions"], args.seed)
        if args.save_npz:
            np.savez(args.save_npz, **{k: data[k] for k in ("log_probs", "lengths", "refs", "units", "ids")})
            print(f"saved {args.save_npz} (ARPA at {arpa} is temporary)")
    elif args.run_dir is not None:
        if args.prepared is None:
            parser.error("--run-dir needs --prepared")
        data = posteriors_of_run(args.run_dir, args.prepared, args.split)
        arpa = args.arpa or args.prepared / "lm_phone_bg.arpa"
    else:
        if args.arpa is None:
            parser.error("--npz needs --arpa")
        arpa = args.arpa
        with np.load(args.npz, allow_pickle=False) as archive:
            data = {k: archive[k] for k in archive.files}
    log_probs = np.asarray(data["log_probs"], dtype=np.float32)
    lengths = np.asarray(data["lengths"], dtype=np.int64)
    refs = [str(r) for r in data["refs"]]
    units = [str(u) for u in data["units"]]
    ids = [str(i) for i in data["ids"]] if "ids" in data else [f"utt{b}" for b in range(len(refs))]
    frames, num_utts, num_classes = log_probs.shape
    print(f"{num_utts} utterances, {frames} frames, {num_classes} classes, mean length {lengths.mean():.1f}; "
          f"beam {args.beam_width}, lm_weight {args.lm_weight}, flashlight beam_size_token "
          f"{args.beam_size_token or 'all'}, beam_threshold {args.beam_threshold}, ARPA {arpa}")

    rows = []
    greedy = GreedyDecoder(units)
    hyps, seconds = timed(in_batches, greedy, log_probs, lengths, args.batch)
    rows.append(("greedy (numpy)", num_utts, seconds, per_of(ids, refs, hyps)))
    greedy_hyps = hyps
    beam = BeamDecoder(units, beam_width=args.beam_width, beam_size_token=args.beam_size_token,
                       beam_threshold=args.beam_threshold)
    hyps, seconds = timed(in_batches, beam, log_probs, lengths, args.batch)
    rows.append(("flashlight beam", num_utts, seconds, per_of(ids, refs, hyps)))
    beam_lm = BeamDecoder(units, beam_width=args.beam_width, lm_path=arpa, lm_weight=args.lm_weight,
                          beam_size_token=args.beam_size_token, beam_threshold=args.beam_threshold)
    hyps, seconds = timed(in_batches, beam_lm, log_probs, lengths, args.batch)
    rows.append(("flashlight beam_lm", num_utts, seconds, per_of(ids, refs, hyps)))
    flashlight_lm_hyps = hyps

    k = num_utts if args.baseline_utts is None else min(args.baseline_utts, num_utts)
    lm = DenseBigramLM(arpa, units)
    hyps, seconds = timed(decode_batch, log_probs[:, :k], lengths[:k], units, args.beam_width, lm, args.lm_weight)
    rows.append(("numpy prefix beam_lm", k, seconds, per_of(ids[:k], refs[:k], hyps)))
    subset = lambda h: per_of(ids[:k], refs[:k], h[:k])  # noqa: E731
    same = sum(a == b for a, b in zip(hyps, flashlight_lm_hyps[:k]))

    print(f"median of {REPEATS} timed passes after one warm-up pass, decoding only (posteriors in memory)")
    print(f"{'decoder':<24}{'utts':>6}{'seconds':>10}{'ms/utt':>10}{'PER %':>9}")
    for name, count, seconds, per in rows:
        print(f"{name:<24}{count:>6}{seconds:>10.3f}{1000 * seconds / count:>10.3f}{per:>9.2f}")
    fl_ms = 1000 * rows[2][2] / rows[2][1]
    base_ms = 1000 * rows[3][2] / rows[3][1]
    print(f"flashlight beam_lm is {base_ms / fl_ms:.1f}x faster per utterance than the NumPy baseline")
    print(f"on the baseline's {k} utterances: PER greedy {subset(greedy_hyps):.2f}, flashlight beam_lm "
          f"{subset(flashlight_lm_hyps):.2f}, numpy beam_lm {rows[3][3]:.2f}; identical hypotheses {same}/{k}")
    workdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
