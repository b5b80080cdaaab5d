"""Embedded synthetic TIMIT-format corpus, synthesized offline with eSpeak NG.

eSpeak NG (GPL-3.0-or-later) comes from the optional ``espeakng-loader`` package
(``pip install 'lstm_exp[synth]'``); only :mod:`lstm_exp.data.synth.espeak` imports it, and
only when a corpus is generated.
"""
from lstm_exp.data.synth.generate import generate_corpus

__all__ = ["generate_corpus"]
