"""Embedded synthetic TIMIT-format corpus, synthesized offline with eSpeak NG.

eSpeak NG (GPL-3.0-or-later) comes from the optional ``espeakng-loader`` package
(``pip install 'lstm_exp[synth]'``); only :mod:`lstm_exp.data.synth.espeak` imports it, and
only when a corpus is generated.
"""
__all__ = ["generate_corpus"]


def __getattr__(name: str):
    """``generate_corpus`` on first use: the generator imports scipy and soundfile (~1 s), which
    composing a config (``conf_schemas.synth`` reads :mod:`.voices`) must not pay."""
    if name == "generate_corpus":
        from lstm_exp.data.synth.generate import generate_corpus

        return generate_corpus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
