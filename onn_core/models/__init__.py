"""Hybrid ONN students (optical frontends + digital backends), electronic teachers, their cost."""

from .cost import count_cost
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
    "STUDENTS",
    "TEACHERS",
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
]
