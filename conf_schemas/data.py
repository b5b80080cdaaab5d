"""Schema of the ``data`` config group: which corpus, where, how it is split and featurised.

``kind``:

* ``synth`` — the embedded eSpeak NG corpus (``synth`` holds its generator settings; the
  speaker lists are the ``dev_spk.list`` / ``test_spk.list`` the generator writes at its root);
* ``timit`` — an LDC TIMIT tree at ``root`` (upper or lower case), Kaldi s5 split with the
  packaged speaker lists unless ``dev_speakers_list`` / ``test_speakers_list`` are given;
* ``kaldi_dir`` — existing Kaldi data dirs ``root/{train,dev,test}`` with ``feats.scp`` (or the
  recipe's ``fbank.scp``) and ``text`` (or ``phn_text``): feature extraction is skipped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from conf_schemas.features import FbankConfig
from conf_schemas.synth import SynthCorpusConfig
from lstm_exp.errors import ConfigError

DATA_KINDS = ("synth", "timit", "kaldi_dir")


@dataclass
class DataConfig:
    """Corpus selection, speaker split, feature options and preparation workers."""

    #: synth | timit | kaldi_dir
    kind: str = "synth"
    #: TIMIT root (holding TRAIN/TEST) or the folder of Kaldi data dirs; unused for synth
    root: Optional[str] = None
    #: speaker list files (one id per line); null = packaged Kaldi s5 lists (timit) or the generator's (synth)
    dev_speakers_list: Optional[str] = None
    test_speakers_list: Optional[str] = None
    #: accept `cmd |` entries in a kaldi_dir's feats.scp (kaldiio runs them as shell commands)
    allow_pipes: bool = False
    #: Kaldi global CMVN stats for kind=kaldi_dir; null = computed from the train split
    cmvn: Optional[str] = None
    #: processes for feature extraction
    workers: int = 2
    fbank: FbankConfig = field(default_factory=FbankConfig)
    #: generator settings, used when kind=synth
    synth: Optional[SynthCorpusConfig] = None

    def __post_init__(self) -> None:
        if self.root:  # data.root="~/TIMIT" (quoted, so no shell expanded it)
            self.root = os.path.expanduser(self.root)
        if self.kind not in DATA_KINDS:
            raise ConfigError(f"data.kind={self.kind!r} is not known: write one of {', '.join(DATA_KINDS)}")
        if self.kind in ("timit", "kaldi_dir"):
            if not self.root:
                example = "/path/to/TIMIT" if self.kind == "timit" else "/path/to/data (holding train/ dev/ test/)"
                raise ConfigError(f"data.root is required for data={self.kind}: write data.root={example}")
            if not Path(self.root).is_dir():
                raise ConfigError(f"data.root={self.root} does not exist or is not a folder: write the path of the corpus")
        for name in ("dev_speakers_list", "test_speakers_list"):
            value = getattr(self, name)
            if value is None:
                continue
            if self.kind == "kaldi_dir":
                raise ConfigError(f"data.{name} is not used with data=kaldi_dir (the dirs fix the split): remove it")
            if not Path(value).is_file():
                raise ConfigError(f"data.{name}={value} is not a file: write the path of a speaker list or null")
        if self.cmvn is not None:
            if self.kind != "kaldi_dir":
                raise ConfigError(
                    f"data.cmvn is only used with data=kaldi_dir (data={self.kind} computes CMVN from train): remove it"
                )
            if not Path(self.cmvn).is_file():
                raise ConfigError(f"data.cmvn={self.cmvn} is not a file: write the path of Kaldi CMVN stats or null")
        if self.allow_pipes and self.kind != "kaldi_dir":
            raise ConfigError(f"data.allow_pipes only applies to data=kaldi_dir: remove it for data={self.kind}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"data.workers={self.workers!r} must be an integer >= 1 (e.g. the number of CPU cores)")
        if self.kind == "synth" and self.synth is None:
            self.synth = SynthCorpusConfig()
