"""Verified scalar optics on torch tensors: SI units, batched, differentiable, CPU and CUDA.

The functional entry points are pure functions; see each module for the formulas:

* :mod:`.propagation` — band-limited angular spectrum, Fresnel, lens Fourier transform, Fraunhofer.
* :mod:`.elements` — apertures (0..1), ideal lens phase, linear (prism) phase.
* :mod:`.metasurface` — meta-atom radius → phase/transmission tables.
* :mod:`.psf` — intensity PSF, OTF/MTF, sensor pixel integration.
* :mod:`.sensor` — shot/read noise, saturation, quantisation with straight-through gradients.
* :mod:`.imaging` — incoherent imaging through a PSF stack (linear convolution).
* :mod:`.analytic` — closed forms the numerics are tested against.
"""

from .elements import circular_aperture, lens_phase, linear_phase, rectangular_aperture
from .imaging import incoherent_image
from .metasurface import MetaAtomTable, default_meta_atom_table, load_meta_atom_table
from .propagation import fraunhofer, lens_fourier, propagate, transfer_function
from .psf import intensity_psf, mtf, normalise_psf, optical_transfer_function, pixel_integrate
from .sensor import quantise, sensor_readout

__all__ = [
    "MetaAtomTable",
    "circular_aperture",
    "default_meta_atom_table",
    "fraunhofer",
    "incoherent_image",
    "intensity_psf",
    "lens_fourier",
    "lens_phase",
    "linear_phase",
    "load_meta_atom_table",
    "mtf",
    "normalise_psf",
    "optical_transfer_function",
    "pixel_integrate",
    "propagate",
    "quantise",
    "rectangular_aperture",
    "sensor_readout",
    "transfer_function",
]
