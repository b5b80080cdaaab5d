"""Score a folder of inference outputs with the recipe's info file: PER/CER, honest and recipe-compatible.

For users who ran the guide's own chain (``LSTM_preprocess_data.py`` -> ``LSTM_get_info.py`` ->
``pyacl_infer.py``) and hold its outputs::

    python -m lstm_exp.recipe_score --info lstm.info --outputs infer_res/ --prepared cache/prepare/<key>

``--info``: the recipe's ``lstm.info`` (``0 ./lstm_bin/inputs_0.bin (16,390,243)``) or ours
(``stage=preprocess``); ``--outputs``: the ``.npy`` files, named as pyacl_infer writes them
(``0.0.npy``: batch 0, output 0), as ais_bench does (``0_0.npy``) or as we do (``0.npy``);
``--prepared``: the prepared data (``python -m lstm_exp stage=prepare`` prints its folder), whose
split (``--split``, default dev) gives references, utterance lengths and, when the info file's
batches carry no ``<n>.ids.txt`` (the recipe's do not), the utterance order: the split's
``feats.scp`` order, which is the order the recipe's data loader batches in.  The class list is
the prepared ``units`` file unless ``--units`` names the one the model was trained with.

Reported: ``per`` / ``cer`` over every utterance the outputs cover (the honest figures), and
``per_recipe`` / ``cer_recipe`` computed as the recipe's postprocess does (the first
``399 // batch`` batches, greedy hypotheses with a leading space; see
:mod:`lstm_exp.metrics.errors`).  Log-probs are decoded up to each utterance's valid output
frames (``ceil(frames / stride)``, the stride from the padded input and output lengths).
Exit status 0, or 2 with one ``recipe_score: error: ...`` line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from conf_schemas.decode import DecodeConfig
from lstm_exp.backends.acl.inputs import find_output, load_output, read_ids, read_info, stride_output_lengths
from lstm_exp.data.batching import load_split, load_units
from lstm_exp.decode import build_decoder
from lstm_exp.errors import DataError, LstmExpError
from lstm_exp.metrics.errors import recipe_scores, score_utterances


def score_outputs(info: Path | str, outputs: Path | str, prepared: Path | str, split: str = "dev",
                  units_file: Optional[Path | str] = None, decode: str = "greedy") -> dict:
    """Decode and score the outputs the info file's batches point at; return the figures."""
    info, outputs, prepared = Path(info), Path(outputs), Path(prepared)
    if not outputs.is_dir():
        raise DataError(f"outputs folder {outputs} does not exist: point --outputs at the folder of .npy files (pyacl_infer's --infer_res_save_path)")
    entries = read_info(info)
    units = load_units(Path(units_file) if units_file else prepared / "units")
    examples = load_split(prepared, split, units, progress=False)
    by_id = {example.utt_id: example for example in examples}
    decoder = build_decoder(DecodeConfig(type=decode), units, prepared / "lm_phone_bg.arpa")
    order: list[str] = []
    hyps: dict[str, list[str]] = {}
    cursor = 0
    for entry in entries:
        batch, frames, _ = entry.shape
        if entry.ids_path.is_file():
            ids, _ = read_ids(entry)
        else:  # the recipe's batches: consecutive utterances of the split, in feats.scp order
            ids = [example.utt_id for example in examples[cursor:cursor + batch]]
            if len(ids) < batch:
                raise DataError(
                    f"{info} lists {sum(e.shape[0] for e in entries)} utterances in {len(entries)} batches but split "
                    f"{split} of {prepared} has {len(examples)}: score with the prepared data the .bin files were made from"
                )
            cursor += batch
        unknown = [utt for utt in ids if utt not in by_id]
        if unknown:
            raise DataError(f"{entry.ids_path}: utterances {unknown[:5]} are not in split {split} of {prepared}")
        lengths = np.array([by_id[utt].feats.shape[0] for utt in ids], dtype=np.int64)
        if lengths.max() > frames:
            raise DataError(f"{info}: batch {entry.index} is padded to {frames} frames but holds an utterance of {lengths.max()}")
        path = find_output(outputs, entry)
        log_probs = load_output(path)
        if log_probs.ndim != 3 or log_probs.shape[1] < batch or log_probs.shape[2] != len(units):
            raise DataError(f"{path} has shape {list(log_probs.shape)}; expected [T', {batch}, {len(units)}] (time-major, {len(units)} classes of {units_file or prepared / 'units'})")
        length_of = stride_output_lengths(frames, log_probs.shape[0])
        out_lengths = np.array([min(length_of(n), log_probs.shape[0]) for n in lengths], dtype=np.int64)
        decoded = decoder.decode(np.ascontiguousarray(log_probs[:, :batch], dtype=np.float32), out_lengths)
        for utt, hyp in zip(ids, decoded):
            if utt in hyps:
                raise DataError(f"{info}: utterance {utt} appears in two batches")
            order.append(utt)
            hyps[utt] = list(hyp)
    refs = {utt: [units[i] for i in by_id[utt].labels] for utt in order}
    report = score_utterances(refs, hyps)
    per_recipe, cer_recipe = recipe_scores([(u, refs[u]) for u in order], [(u, hyps[u]) for u in order],
                                           entries[0].shape[0], hyp_leading_space=decode == "greedy")
    return {
        "per": report.per, "cer": report.cer, "per_recipe": per_recipe, "cer_recipe": cer_recipe,
        "utterances": len(order), "split_utterances": len(examples), "batches": len(entries),
        "batch": entries[0].shape[0], "decode": decode, "split": split,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_exp.recipe_score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--info", required=True, help="info file: the recipe's lstm.info or ours (stage=preprocess)")
    parser.add_argument("--outputs", required=True, help="folder of .npy outputs (0.0.npy, 0_0.npy or 0.npy per batch)")
    parser.add_argument("--prepared", required=True, help="prepared data folder (cache/prepare/<key>)")
    parser.add_argument("--split", default="dev", help="split of the prepared data the batches came from (default dev)")
    parser.add_argument("--units", default=None, help="units file the model was trained with (default <prepared>/units)")
    parser.add_argument("--decode", default="greedy", choices=("greedy", "beam", "beam_lm"), help="decoder (default greedy, as the recipe)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        result = score_outputs(args.info, args.outputs, args.prepared, args.split, args.units, args.decode)
    except LstmExpError as exc:
        print(f"recipe_score: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"scored {result['utterances']} of the {result['split_utterances']} {result['split']} utterances in {result['batches']} batches of {result['batch']} ({result['decode']} decoding)")
    print(f"PER {result['per']:.4f}  CER {result['cer']:.4f}   (every scored utterance)")
    print(f"PER {result['per_recipe']:.4f}  CER {result['cer_recipe']:.4f}   (recipe-compatible: first 399 // batch batches, leading-space CER)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
