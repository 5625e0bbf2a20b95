"""Hybrid ONN students (optical frontends + digital backends), electronic teachers, their cost."""

from .cost import count_cost
from .energy import DEFAULT_ENERGY_MODEL, EnergyModel, energy_per_image
from .frontends import IdealFrontend, OpticalFrontend, PhysicalFrontend, SensorSettings, default_phase_pixel
from .zoo import (
    STUDENTS,
    TEACHERS,
    FrontendOptions,
    build_student,
    build_teacher,
    default_student,
    default_teacher,
)

__all__ = [
    "DEFAULT_ENERGY_MODEL",
    "STUDENTS",
    "TEACHERS",
    "EnergyModel",
    "FrontendOptions",
    "IdealFrontend",
    "OpticalFrontend",
    "PhysicalFrontend",
    "SensorSettings",
    "build_student",
    "build_teacher",
    "count_cost",
    "default_phase_pixel",
    "default_student",
    "default_teacher",
    "energy_per_image",
]
