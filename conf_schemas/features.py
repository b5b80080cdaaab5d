"""Feature configuration: Kaldi fbank options plus the recipe's load-time splice/skip.

Defaults reproduce the recipe's ``compute-fbank-feats --window-type=hamming
--num-mel-bins=80 --use-energy`` with every other option at Kaldi's default, except
``dither``: Kaldi's default is 1.0 (random noise added to every sample, so features differ
from run to run); we use 0.0 so that features are reproducible bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lstm_exp.errors import ConfigError, fault_message

KNOWN_WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "blackman", "sine")


@dataclass
class FbankConfig:
    """Options of Kaldi's ``compute-fbank-feats`` (names as Kaldi's, underscored)."""

    sample_frequency: float = 16000.0
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window_type: str = "hamming"
    blackman_coeff: float = 0.42
    num_mel_bins: int = 80
    use_energy: bool = True
    # Kaldi's default is 1.0 (random); 0.0 makes features reproducible.
    dither: float = 0.0
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    snip_edges: bool = True
    round_to_power_of_two: bool = True
    low_freq: float = 20.0
    # 0 means the Nyquist frequency; a negative value is an offset from it (Kaldi semantics).
    high_freq: float = 0.0
    energy_floor: float = 0.0
    raw_energy: bool = True
    htk_compat: bool = False
    use_log_fbank: bool = True
    use_power: bool = True
    # Recipe's load-time processing: frames t..t+right_context concatenated, every
    # frame_skip-th frame kept (see lstm_exp.data.features.splice_skip_pad).
    right_context: int = 2
    frame_skip: int = 2

    def __post_init__(self) -> None:
        faults: list[str] = []
        for name in ("sample_frequency", "frame_length_ms", "frame_shift_ms"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                faults.append(f"fbank.{name}: {value!r} must be a positive number (recipe: "
                              f"{_DEFAULTS[name]})")
        if self.window_type not in KNOWN_WINDOW_TYPES:
            faults.append(f"fbank.window_type: {self.window_type!r} is not a Kaldi window; "
                          f"write one of {', '.join(KNOWN_WINDOW_TYPES)} (recipe: hamming)")
        if not (isinstance(self.num_mel_bins, int) and self.num_mel_bins >= 3):
            faults.append(f"fbank.num_mel_bins: {self.num_mel_bins!r} must be an integer >= 3 "
                          "(recipe: 80)")
        if not self.dither >= 0:
            faults.append(f"fbank.dither: {self.dither!r} must be >= 0 (0.0 for reproducible "
                          "features)")
        if not 0 <= self.preemph_coeff <= 1:
            faults.append(f"fbank.preemph_coeff: {self.preemph_coeff!r} must be in [0, 1] "
                          "(recipe: 0.97)")
        if not self.energy_floor >= 0:
            faults.append(f"fbank.energy_floor: {self.energy_floor!r} must be >= 0 (recipe: 0)")
        nyquist = 0.5 * self.sample_frequency if self.sample_frequency > 0 else 0.0
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if not 0 <= self.low_freq < nyquist:
            faults.append(f"fbank.low_freq: {self.low_freq!r} must be in [0, {nyquist:g}) "
                          "(recipe: 20)")
        elif not self.low_freq < high <= nyquist:
            faults.append(f"fbank.high_freq: {self.high_freq!r} gives an upper edge of "
                          f"{high:g} Hz, which must lie in ({self.low_freq:g}, {nyquist:g}]; "
                          "write 0 for the Nyquist frequency")
        if (self.sample_frequency > 0 and self.frame_shift_ms > 0 and self.frame_length_ms > 0
                and self.frame_shift_ms > self.frame_length_ms):
            faults.append(f"fbank.frame_shift_ms: {self.frame_shift_ms!r} is longer than "
                          f"frame_length_ms {self.frame_length_ms!r}; samples would be skipped")
        if not (isinstance(self.right_context, int) and self.right_context >= 0):
            faults.append(f"fbank.right_context: {self.right_context!r} must be an integer >= 0 "
                          "(recipe: 2)")
        if not (isinstance(self.frame_skip, int) and self.frame_skip >= 1):
            faults.append(f"fbank.frame_skip: {self.frame_skip!r} must be an integer >= 1 "
                          "(recipe: 2; 1 keeps every frame)")
        if faults:
            raise ConfigError(fault_message("invalid fbank config", faults))

    @property
    def feature_dim(self) -> int:
        """Raw fbank dimension (81 for the recipe)."""
        return self.num_mel_bins + (1 if self.use_energy else 0)

    @property
    def spliced_dim(self) -> int:
        """Model input dimension after splicing (243 for the recipe)."""
        return self.feature_dim * (1 + self.right_context)


_DEFAULTS = {"sample_frequency": 16000, "frame_length_ms": 25, "frame_shift_ms": 10}
