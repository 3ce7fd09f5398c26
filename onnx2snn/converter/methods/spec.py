"""Threshold method specifications: ``BASE[+MODIFIER...]`` parsed once into a ``ThresholdMethod``.

- ``max``: the largest ANN activation of the layer (Diehl et al. 2015).
- ``percentile:P``: the P-th percentile of the layer's positive ANN activations, which
  ignores rare outliers (Rueckauer et al. 2017).
- ``spikenorm``: SpikeNorm (Sengupta et al. 2019), layer by layer the largest input current the
  layer receives while the layers before it already spike (see ``spikenorm.py``).
- ``robust`` / ``auto`` and the modifiers: layer-by-layer calibration (``calibrate.py``,
  docs/low_latency.md).
"""
from __future__ import annotations

import dataclasses
import re

from ...errors import ConfigError

BASES = ("max", "percentile", "robust", "spikenorm", "auto")
V_INIT_MODES = ("zero", "half", "opt")
SPEC_HELP = ("BASE[+MODIFIER...]; BASE: max | percentile:P | robust | spikenorm | auto; MODIFIER: "
             "layer | channel | vzero | vhalf | vopt | biascorr | potcorr | scale | signed | burst:G")


@dataclasses.dataclass(frozen=True)
class ThresholdMethod:
    """A conversion method: where thresholds come from plus optional calibration steps.

    ``kind``: max | percentile | robust (percentile picked per layer from calibration loss) |
    spikenorm | auto (all calibration steps, choices made on held-out train images).
    Modifiers (docs/low_latency.md): ``channel`` thresholds, ``v_init`` zero|half|opt,
    ``biascorr`` / ``potcorr`` (mean-error correction as a bias current / as initial potential),
    ``scale`` (threshold scale searched per layer), ``signed`` and ``burst:G`` spikes.
    """

    kind: str
    percentile: float | None = None
    channel: bool = False
    v_init: str = "zero"
    bias_correction: bool = False
    potential_correction: bool = False
    scale_search: bool = False
    signed: bool = False
    burst: int = 1

    def __str__(self) -> str:
        base = f"percentile:{self.percentile:g}" if self.kind == "percentile" else self.kind
        if self.kind == "auto":
            return base + "".join(self._neuron_parts())
        parts = [base]
        if self.channel:
            parts.append("channel")
        if self.v_init != "zero":
            parts.append("v" + self.v_init)
        if self.bias_correction:
            parts.append("biascorr")
        if self.potential_correction:
            parts.append("potcorr")
        if self.scale_search:
            parts.append("scale")
        return "+".join(parts) + "".join(self._neuron_parts())

    def _neuron_parts(self) -> list[str]:
        return (["+signed"] if self.signed else []) + ([f"+burst:{self.burst}"] if self.burst > 1 else [])

    @property
    def simulates(self) -> bool:
        """Whether calibration simulates the SNN layer by layer (not one ANN pass)."""
        return (self.kind in ("robust", "auto") or self.bias_correction or self.potential_correction
                or self.scale_search or self.v_init == "opt")

    @property
    def extended_neuron(self) -> bool:
        return self.signed or self.burst > 1

    @classmethod
    def parse(cls, text: str | ThresholdMethod) -> ThresholdMethod:
        if isinstance(text, ThresholdMethod):
            return text
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"empty threshold method; use {SPEC_HELP}", parameter="threshold")
        base, *modifiers = [part.strip() for part in text.strip().split("+")]
        fields: dict = {}
        match = re.fullmatch(r"percentile:([0-9]*\.?[0-9]+)", base)
        if match and 0 < float(match.group(1)) <= 100:
            fields.update(kind="percentile", percentile=float(match.group(1)))
        elif base in ("max", "robust", "spikenorm", "auto"):
            fields["kind"] = base
        else:
            raise ConfigError(f"unknown threshold method {base!r} in {text!r}; use {SPEC_HELP} "
                              "(percentile needs 0 < P <= 100)", parameter="threshold")
        for modifier in modifiers:
            burst = re.fullmatch(r"burst:([0-9]+)", modifier)
            if modifier in ("layer", "channel"):
                fields["channel"] = modifier == "channel"
            elif modifier in ("vzero", "vhalf", "vopt"):
                fields["v_init"] = modifier[1:]
            elif modifier == "biascorr":
                fields["bias_correction"] = True
            elif modifier == "potcorr":
                fields["potential_correction"] = True
            elif modifier == "scale":
                fields["scale_search"] = True
            elif modifier == "signed":
                fields["signed"] = True
            elif burst and 1 <= int(burst.group(1)) <= 127:
                fields["burst"] = int(burst.group(1))
            else:
                raise ConfigError(f"unknown modifier {modifier!r} in threshold method {text!r}; use {SPEC_HELP} "
                                  "(burst:G needs 1 <= G <= 127)", parameter="threshold")
        if fields["kind"] == "spikenorm" and modifiers:
            raise ConfigError(f"spikenorm takes no modifiers, got {text!r}", parameter="threshold")
        if fields["kind"] == "auto" and set(fields) - {"kind", "signed", "burst"}:
            raise ConfigError(f"auto chooses its own calibration steps; only +signed and +burst:G may follow it, "
                              f"got {text!r}", parameter="threshold")
        return cls(**fields)
