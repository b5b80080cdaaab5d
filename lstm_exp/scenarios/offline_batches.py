"""``offline_batches``: the guide's loop, fixed batches back to back (the default scenario).

Exactly :func:`lstm_exp.evaluate.evaluate`: ``infer.batching`` plans the batches, the ``infer``
timing plan repeats the passes, the first pass decodes and scores.  Its numbers and files are
those every job had before scenarios existed.
"""
from __future__ import annotations

from lstm_exp.backends.base import Backend
from lstm_exp.scenarios.base import Scenario


class OfflineBatches(Scenario):
    name = "offline_batches"

    def run(self, backend: Backend):
        from lstm_exp.evaluate import evaluate

        job, infer = self.job, self.job.infer
        self.job.tags["lstm_exp.scenario_padding"] = _padding(job.batching, job.pad_to)
        return evaluate(
            backend, job.decoder, job.examples, job.units, job.batch, job.pad_to, infer.warmup, job.audio_seconds,
            output_lengths=job.output_lengths, keep_log_probs=infer.save_log_probs, progress=job.progress,
            recipe_leading_space=job.recipe_leading_space, batching=job.batching, repeats=infer.repeats,
            min_seconds=infer.min_seconds, min_batches=infer.min_batches, max_seconds=infer.max_seconds,
            noisy_cv=infer.noisy_cv, noisy_other_cpu=infer.noisy_other_cpu, artifact=job.artifact,
            reference=job.reference, variant=job.variant)


def _padding(batching: str, pad_to) -> str:
    if batching == "fixed":
        return f"every batch padded to {pad_to} frames, file order"
    order = "length-sorted" if batching == "sorted" else "file order"
    return f"each batch padded to its longest utterance, {order}"
