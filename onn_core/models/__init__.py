"""Hybrid ONN students (optical frontends + digital backends), electronic teachers, their cost."""

from .cost import count_cost
from .frontends import IdealFrontend, OpticalFrontend, PhysicalFrontend, SensorSettings, default_phase_pixel
from .zoo import (
    DEFAULT_STUDENT,
    DEFAULT_TEACHER,
    STUDENTS,
    TEACHERS,
    FrontendOptions,
    build_student,
    build_teacher,
)

__all__ = [
    "DEFAULT_STUDENT",
    "DEFAULT_TEACHER",
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
]
