"""Energy per image of a hybrid optical network: the sensor's read-out and the digital work.

The convolutions the meta-optic performs cost no electrical energy (passive optics, scene light).
What does cost energy is counted from the student's layers (:func:`~onn_core.models.count_cost`)
and the design's sensor:

* **digital**: ``digital_macs × mac_energy``. Every multiply-accumulate of the backend and of
  the frontend's digital side (K⁺ − K⁻, gains, auto-exposure). The default, 4.6 pJ, is a 32-bit
  floating-point multiply (3.7 pJ) plus add (0.9 pJ) in 45 nm CMOS (M. Horowitz, "Computing's
  energy problem", ISSCC 2014) — the arithmetic the backend runs in.
* **sensor**: ``conversions × conversion_step_energy × 2**bit_depth``. Each value the backend
  reads from the sensor spans ``sensor_pixels_per_tap²`` sensor pixels, each converted once (no
  on-chip binning assumed); a conversion costs the Walden figure of merit times its 2^bits steps.
  The default figure, 1 pJ per step, is an assumption for a column-parallel image-sensor ADC
  with its read-out chain; change it for the sensor you will use.

Memory traffic, illumination and the sensor's static power are left out: the model ranks designs
of one system against each other (more kernels, more bits, a bigger backend cost more), it does
not predict a measured figure. Values are joules per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..design import Design


@dataclass(frozen=True)
class EnergyModel:
    """The two costs of the energy model.

    Attributes:
        mac_energy: energy of one digital multiply-accumulate, joules.
        conversion_step_energy: ADC energy per conversion step (Walden figure of merit), joules;
            one conversion of b bits costs this × 2^b.
    """

    mac_energy: float = 4.6e-12
    conversion_step_energy: float = 1e-12

    def __post_init__(self) -> None:
        for name in ("mac_energy", "conversion_step_energy"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or not 0 < value < 1e-6:  # fmt: skip
                raise ValueError(f"{name} must be a positive energy below 1 µJ (joules); got {value!r}.")


DEFAULT_ENERGY_MODEL = EnergyModel()


def energy_per_image(cost: dict[str, Any], design: Design, model: EnergyModel = DEFAULT_ENERGY_MODEL) -> dict[str, Any]:
    """Energy per image, joules: {"digital_j", "sensor_j", "total_j", "sensor_conversions"}.

    ``cost`` is :func:`~onn_core.models.count_cost`'s answer for the student of ``design``.
    """
    conversions = int(cost.get("sensor_values", 0)) * design.sensor_pixels_per_tap**2
    digital = cost["digital_macs"] * model.mac_energy
    sensor = conversions * model.conversion_step_energy * 2**design.sensor_bit_depth
    return {"digital_j": digital, "sensor_j": sensor, "total_j": digital + sensor, "sensor_conversions": conversions,
            "model": {"mac_energy_j": model.mac_energy, "conversion_step_energy_j": model.conversion_step_energy}}
