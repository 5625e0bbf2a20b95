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

# Loaded on first use (PEP 562): importing a submodule of this package (the design object
# imports .formulas) must not load torch through this file.
_EXPORTS = {
    "MetaAtomTable": "metasurface",
    "circular_aperture": "elements",
    "default_meta_atom_table": "metasurface",
    "fraunhofer": "propagation",
    "incoherent_image": "imaging",
    "intensity_psf": "psf",
    "lens_fourier": "propagation",
    "lens_phase": "elements",
    "linear_phase": "elements",
    "load_meta_atom_table": "metasurface",
    "mtf": "psf",
    "normalise_psf": "psf",
    "optical_transfer_function": "psf",
    "pixel_integrate": "psf",
    "propagate": "propagation",
    "quantise": "sensor",
    "rectangular_aperture": "elements",
    "sensor_readout": "sensor",
    "transfer_function": "propagation",
}


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


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
