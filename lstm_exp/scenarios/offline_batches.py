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
        from lstm_exp.evaluate import TimingPlan, evaluate

        job = self.job
        job.tags["lstm_exp.scenario_padding"] = _padding(job.batching, job.pad_to)
        return evaluate(
            backend, job.decoder, job.examples, job.units, job.batch, job.pad_to, job.audio_seconds,
            output_lengths=job.output_lengths, plan=TimingPlan.of(job.infer), batching=job.batching,
            artifact=job.artifact, reference=job.reference, variant=job.variant,
            keep_log_probs=job.infer.save_log_probs, progress=job.progress, recipe_leading_space=job.recipe_leading_space)


def _padding(batching: str, pad_to) -> str:
    if batching == "fixed":
        return f"every batch padded to {pad_to} frames, file order"
    order = "length-sorted" if batching == "sorted" else "file order"
    return f"each batch padded to its longest utterance, {order}"
