"""Error rates (:mod:`lstm_exp.metrics.errors`) and latency statistics (``timing``)."""
