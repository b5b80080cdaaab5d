"""The curated eSpeak NG "speakers" of the synthetic corpus.

Each speaker is the ``en-us`` voice with one variant from ``espeak-ng-data/voices/!v`` plus its
own speaking rate (words/min), pitch and pitch range (0-100) and volume.  Novelty variants
(whisper, croak, robots, strong echo, ...) are left out.  Volumes are lowered for the variants
that clip at eSpeak's usual 65-70.  Speaker ids follow TIMIT: gender letter, three letters,
one digit; directory names are upper case, speaker lists lower case.

The first 12 speakers are the default dev and test voices, chosen deliberately among ordinary
variants (not ``Lee``, whose pushed-down third formant makes it an outlier); the rest form the
train pool, in the order in which ``train_speakers`` takes them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker."""

    speaker_id: str  # e.g. "MMAL1" (upper case, as the TIMIT directory)
    variant: str  # eSpeak voice variant, used as "en-us+<variant>"
    rate: int  # words per minute
    pitch: int  # 0-100
    pitch_range: int  # 0-100
    volume: int  # 0-200; 65-70 is safe for most variants
    dialect_region: int  # 1-8, only names the DRn directory

    @property
    def gender(self) -> str:
        return self.speaker_id[0]

    @property
    def espeak_name(self) -> str:
        return f"en-us+{self.variant}"


def _v(sid: str, variant: str, rate: int, pitch: int, prange: int, volume: int, dr: int) -> Voice:
    return Voice(sid, variant, rate, pitch, prange, volume, dr)


CURATED_VOICES: Tuple[Voice, ...] = (
    # default dev speakers
    _v("MMAL1", "m1", 160, 50, 50, 68, 1),
    _v("MMAL6", "m6", 170, 40, 40, 68, 2),
    _v("FFEM2", "f2", 180, 60, 60, 68, 3),
    _v("FFEM5", "f5", 165, 45, 30, 68, 4),
    _v("MGUS0", "gustave", 175, 55, 70, 60, 5),
    _v("MQUI0", "quincy", 185, 35, 45, 68, 6),
    # default test speakers
    _v("MMAL4", "m4", 155, 65, 55, 68, 7),
    _v("MMAL5", "m5", 190, 50, 65, 68, 8),
    _v("FFEM3", "f3", 172, 40, 50, 68, 1),
    _v("FAND0", "Andrea", 160, 60, 40, 59, 2),
    _v("MTRA0", "travis", 170, 45, 60, 68, 3),
    _v("MEDX0", "ed", 180, 55, 30, 36, 4),
    # train pool (train_speakers takes the first N of the voices not used for dev/test)
    _v("MMAL2", "m2", 165, 35, 70, 68, 5),
    _v("MMAL3", "m3", 175, 65, 45, 68, 6),
    _v("MMAL7", "m7", 185, 50, 55, 68, 7),
    _v("MMAL8", "m8", 155, 40, 65, 68, 8),
    _v("FFEM1", "f1", 190, 60, 50, 68, 1),
    _v("FFEM4", "f4", 172, 45, 40, 68, 2),
    _v("MALE0", "Alex", 160, 55, 60, 68, 3),
    _v("MAND0", "Andy", 170, 35, 30, 65, 4),
    _v("FANN0", "Annie", 180, 65, 70, 68, 5),
    _v("MDEN0", "Denis", 165, 50, 45, 68, 6),
    _v("MDIO0", "Diogo", 175, 40, 55, 68, 7),
    _v("MGEN0", "Gene", 185, 60, 65, 54, 8),
    _v("MMAR0", "Mario", 155, 45, 50, 68, 1),
    _v("MMIC0", "Michael", 190, 55, 40, 68, 2),
    _v("MMIK0", "Mike", 172, 35, 60, 68, 3),
    _v("MSTO0", "Storm", 160, 65, 30, 47, 4),
    _v("MADA0", "adam", 170, 50, 70, 68, 5),
    _v("FANI0", "anika", 180, 40, 45, 68, 6),
    _v("FBEL0", "belinda", 165, 60, 55, 64, 7),
    _v("MBEN0", "benjamin", 175, 45, 65, 68, 8),
    _v("MBOR0", "boris", 185, 55, 50, 68, 1),
    _v("MDAV0", "david", 155, 35, 40, 68, 2),
    _v("MEDW0", "edward", 190, 65, 60, 53, 3),
    _v("MIVE0", "iven", 172, 50, 30, 30, 4),
    _v("FLIN0", "linda", 160, 40, 70, 68, 5),
    _v("MMAR1", "marcelo", 170, 60, 45, 68, 6),
    _v("MMAX0", "max", 180, 45, 55, 68, 7),
    _v("MPED0", "pedro", 165, 55, 65, 48, 8),
    _v("MROB0", "robert", 175, 35, 50, 68, 1),
    _v("FSTE0", "steph", 185, 65, 40, 68, 2),
    _v("FALI0", "Alicia", 155, 50, 60, 68, 3),
    _v("FAUN0", "aunty", 190, 40, 30, 68, 4),
    _v("MGEN2", "Gene2", 172, 60, 70, 53, 5),
    _v("MHEN0", "Henrique", 160, 45, 45, 68, 6),
    _v("MHUG0", "Hugo", 170, 55, 55, 68, 7),
    _v("MJAC0", "Jacky", 180, 35, 65, 33, 8),
    _v("MANT0", "antonio", 165, 65, 50, 30, 1),
    _v("MEDW2", "edward2", 175, 50, 40, 68, 2),
    _v("MIVE2", "iven2", 185, 40, 60, 47, 3),
    _v("MIVE3", "iven3", 155, 60, 30, 68, 4),
    _v("MKLA3", "klatt3", 190, 45, 70, 68, 5),
    _v("MKLA6", "klatt6", 172, 55, 45, 68, 6),
    _v("MMIC1", "michel", 160, 35, 55, 68, 7),
    _v("MMIG0", "miguel", 170, 65, 65, 68, 8),
    _v("MMIK2", "mike2", 180, 50, 50, 52, 1),
    _v("MPAU0", "paul", 165, 40, 40, 36, 2),
    _v("MROB1", "rob", 175, 60, 60, 68, 3),
    _v("MSAN0", "sandro", 185, 45, 30, 56, 4),
    _v("FSTE2", "steph2", 155, 55, 70, 58, 5),
    _v("MVIC0", "victor", 190, 35, 45, 68, 6),
    _v("MGRA0", "grandpa", 172, 65, 55, 68, 7),
    _v("FGRA0", "grandma", 160, 50, 65, 68, 8),
    _v("MNGU0", "Nguyen", 170, 40, 50, 68, 1),
    _v("MREE0", "Reed", 180, 60, 40, 68, 2),
    _v("MKAU0", "kaukovalta", 165, 45, 60, 68, 3),
    _v("MLEE0", "Lee", 175, 55, 30, 68, 4),
)

VOICES_BY_ID: Dict[str, Voice] = {v.speaker_id.lower(): v for v in CURATED_VOICES}

DEFAULT_DEV_SPEAKERS: List[str] = ["mmal1", "mmal6", "ffem2", "ffem5", "mgus0", "mqui0"]
DEFAULT_TEST_SPEAKERS: List[str] = ["mmal4", "mmal5", "ffem3", "fand0", "mtra0", "medx0"]


def voice(speaker_id: str) -> Voice:
    """The curated voice with this speaker id (any case); KeyError if unknown."""
    return VOICES_BY_ID[speaker_id.lower()]


def train_pool(exclude: List[str]) -> List[Voice]:
    """Curated voices not in ``exclude`` (speaker ids, any case), in table order."""
    excluded = {s.lower() for s in exclude}
    return [v for v in CURATED_VOICES if v.speaker_id.lower() not in excluded]
