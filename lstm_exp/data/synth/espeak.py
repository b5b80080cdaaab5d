"""ctypes binding to eSpeak NG from the ``espeakng-loader`` wheel (GPL-3.0-or-later).

This is the only module of the project that imports ``espeakng_loader``.  eSpeak NG keeps all
of its state in process globals and its waveform generator keeps state between calls, so:

* call :func:`initialize` once per process (never from threads);
* synthesize in a freshly forked child of an initialised, never-synthesizing process, in a
  fixed order, each utterance after its own seed (:func:`synthesize` sets it), to get the
  same audio whatever else the parent process did.

:func:`synthesize` returns the 22,050 Hz waveform plus the WORD, PHONEME and END events with
their exact sample positions.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from lstm_exp.errors import MissingDependencyError

# espeak_AUDIO_OUTPUT / options / flags (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000

# espeak_PARAMETER
PARAM_RATE = 1
PARAM_VOLUME = 2
PARAM_PITCH = 3
PARAM_RANGE = 4
PARAM_WORDGAP = 7

# espeak_EVENT_TYPE
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_END = 5
EVENT_PHONEME = 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT: 40 bytes on x86_64."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class WordEvent:
    """A WORD event: 1-based character position and length in the UTF-8 input, start sample."""

    text_position: int
    length: int
    sample: int


@dataclass(frozen=True)
class PhonemeEvent:
    """A PHONEME event: eSpeak mnemonic (stress marks kept) and start sample."""

    mnemonic: str
    sample: int


@dataclass
class Synthesis:
    """One synthesized utterance at eSpeak's own sample rate (22,050 Hz)."""

    samples: np.ndarray  # int16
    sample_rate: int
    words: List[WordEvent]
    phonemes: List[PhonemeEvent]
    end_sample: int


class _State:
    lib: Optional[ctypes.CDLL] = None
    sample_rate: int = 0
    callback = None  # keeps the ctypes callback object alive
    chunks: List[np.ndarray] = []
    words: List[WordEvent] = []
    phonemes: List[PhonemeEvent] = []
    end_sample: int = -1


_STATE = _State()


def _load_loader():
    try:
        import espeakng_loader  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise MissingDependencyError(
            "the synthetic corpus needs eSpeak NG from the 'espeakng-loader' package "
            "(GPL-3.0-or-later): pip install 'lstm_exp[synth]'"
        ) from exc
    return espeakng_loader


def check_available() -> None:
    """Raise MissingDependencyError unless espeakng_loader can be imported."""
    _load_loader()


def _on_synth(wav, numsamples, events) -> int:
    if numsamples > 0:
        _STATE.chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
    i = 0
    while True:
        ev = events[i]
        if ev.type == EVENT_LIST_TERMINATED:
            break
        if ev.type == EVENT_WORD:
            _STATE.words.append(WordEvent(ev.text_position, ev.length, ev.sample))
        elif ev.type == EVENT_PHONEME:
            raw = bytes(ev.id.string).split(b"\0", 1)[0]
            _STATE.phonemes.append(PhonemeEvent(raw.decode("ascii", "replace"), ev.sample))
        elif ev.type == EVENT_END:
            _STATE.end_sample = ev.sample
        i += 1
    return 0


def initialize() -> int:
    """Load libespeak-ng and initialise it once in this process; return its sample rate."""
    if _STATE.lib is not None:
        return _STATE.sample_rate
    loader = _load_loader()
    lib = ctypes.CDLL(loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.argtypes = [
        ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int
    ]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, loader.get_data_path().encode(),
        _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT,
    )
    if rate <= 0:
        raise MissingDependencyError(
            f"espeak_Initialize failed ({rate}) with data at {loader.get_data_path()}: "
            "reinstall espeakng-loader (pip install 'lstm_exp[synth]')"
        )
    _STATE.callback = _SynthCallback(_on_synth)
    lib.espeak_SetSynthCallback(_STATE.callback)
    _STATE.lib = lib
    _STATE.sample_rate = rate
    return rate


def set_voice(name: str, rate: int, pitch: int, pitch_range: int, volume: int) -> None:
    """Select voice ``name`` (e.g. ``en-us+m3``) and set every prosody parameter."""
    lib = _STATE.lib
    if lib is None:
        raise RuntimeError("espeak.initialize() must be called first")
    if lib.espeak_SetVoiceByName(name.encode()) != 0:
        raise MissingDependencyError(
            f"eSpeak NG has no voice {name!r}: reinstall espeakng-loader==0.2.4"
        )
    for param, value in (
        (PARAM_RATE, rate), (PARAM_VOLUME, volume), (PARAM_PITCH, pitch),
        (PARAM_RANGE, pitch_range), (PARAM_WORDGAP, 0),
    ):
        lib.espeak_SetParameter(param, int(value), 0)


def synthesize(text: str, seed: int) -> Synthesis:
    """Synthesize ``text`` with the current voice after seeding eSpeak's generator."""
    lib = _STATE.lib
    if lib is None:
        raise RuntimeError("espeak.initialize() must be called first")
    _STATE.chunks, _STATE.words, _STATE.phonemes, _STATE.end_sample = [], [], [], -1
    lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
    data = text.encode("utf-8")
    buf = ctypes.create_string_buffer(data)
    uid = ctypes.c_uint()
    status = lib.espeak_Synth(
        buf, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, ctypes.byref(uid), None
    )
    lib.espeak_Synchronize()
    if status != 0:
        raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r}")
    samples = np.concatenate(_STATE.chunks) if _STATE.chunks else np.zeros(0, np.int16)
    end = _STATE.end_sample if _STATE.end_sample >= 0 else len(samples)
    return Synthesis(samples, _STATE.sample_rate, list(_STATE.words), list(_STATE.phonemes), end)


def text_to_phonemes(text: str) -> List[str]:
    """eSpeak mnemonics of ``text`` (current voice), without stress marks or word breaks."""
    lib = _STATE.lib
    if lib is None:
        raise RuntimeError("espeak.initialize() must be called first")
    buf = ctypes.create_string_buffer(text.encode("utf-8"))
    ptr = ctypes.c_void_p(ctypes.addressof(buf))
    out: List[str] = []
    while ptr.value:
        res = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, ord(" ") << 8)
        if res:
            out.extend(p for p in res.decode("ascii", "replace").replace("_", " ").split() if p)
    return [p.lstrip("',") for p in out]
