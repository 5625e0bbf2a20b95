"""Design-page previews: a kernel realised by one sub-optic, and two designs compared."""

import numpy as np
import pytest
from scipy.special import sici

from onn_core.design import Design
from onn_core.errors import DesignError
from onn_core.optics.metasurface import default_meta_atom_table
from studio.design_form import compare_rows
from studio.preview import PREVIEW_KERNELS, kernel_preview, preview_kernel


def _square_focus_fraction(half_width: float, aperture: float, wavelength: float, distance: float) -> float:
    """Closed form: the share of a focused square aperture's power inside a centred square of half-width a.

    Per axis the PSF is sinc²(k x / λz); ∫_{-a}^{a} of it over its total is (2/π)[Si(2πu) − sin²(πu)/(πu)]
    with u = a k / (λz).
    """
    u = half_width * aperture / (wavelength * distance)
    per_axis = 2 / np.pi * (sici(2 * np.pi * u)[0] - np.sin(np.pi * u) ** 2 / (np.pi * u))
    return float(per_axis**2)


def test_a_centre_tap_kernel_is_a_lens_that_puts_the_closed_form_share_on_the_tap():
    design = Design()
    wavelength = design.wavelengths[0]
    preview = kernel_preview(design, preview_kernel("lens", design.kernel_taps), wavelength)
    expected = _square_focus_fraction(design.tap_pitch / 2, design.kernel_size, wavelength, design.sensor_distance)
    centre = design.kernel_taps // 2
    # The table's transmission (≈ 0.98–1 over its range) and 2π phase wrapping cost a little light.
    assert preview.realised[centre, centre] == pytest.approx(expected, abs=0.03)
    assert preview.correlation > 0.999


@pytest.mark.parametrize("name", list(PREVIEW_KERNELS.values()))
def test_every_preview_kernel_is_realised_where_it_should_be(name):
    design = Design(kernel_size=0.3e-3, sensor_distance=1.0e-3, metasurface_width=1.5e-3, metasurface_height=1.5e-3)
    kernel = preview_kernel(name, design.kernel_taps)
    assert kernel.sum() == pytest.approx(1.0) and (kernel >= 0).all()
    preview = kernel_preview(design, kernel, design.wavelengths[0])
    assert preview.correlation > 0.85  # the hologram start; inverse design optimises from here
    assert 0.5 < preview.efficiency <= 1.0
    # The light lands where the kernel is: power centroids agree to a fraction of a tap.
    taps = np.mgrid[: design.kernel_taps, : design.kernel_taps]
    centroid = [(axis * preview.realised).sum() / preview.realised.sum() for axis in taps]
    np.testing.assert_allclose(centroid, [(axis * kernel).sum() for axis in taps], atol=0.35)
    low, high = default_meta_atom_table().radius_range
    assert preview.radius.min() >= low and preview.radius.max() <= high and preview.parameter == "diameter"
    assert np.abs(preview.phase).max() <= np.pi + 1e-9
    assert preview.phase.shape == preview.radius.shape == (min(160, preview.samples),) * 2


def test_kernel_previews_refuse_what_one_capture_cannot_be():
    design = Design()
    with pytest.raises(DesignError, match="not a preview kernel"):
        preview_kernel("sharpen", 7)
    with pytest.raises(DesignError, match="non-negative"):
        kernel_preview(design, -preview_kernel("lens", design.kernel_taps), design.wavelengths[0])
    with pytest.raises(DesignError, match="7 × 7"):
        kernel_preview(design, np.ones((5, 5)), design.wavelengths[0])
    huge = Design(kernel_size=3e-3, metasurface_width=7e-3, metasurface_height=7e-3, sensor_distance=8e-3)
    with pytest.raises(DesignError, match="interactive preview stops at 1600"):
        kernel_preview(huge, preview_kernel("lens", huge.kernel_taps), huge.wavelengths[0])


def test_two_designs_compare_row_by_row():
    a, b = Design(), Design(metasurface_width=8e-3, wavelengths=(635e-9, 532e-9, 450e-9))
    rows = {row["quantity"]: row for row in compare_rows(a, b)}
    assert rows["Sub-optic grid"]["differs"] == "●" and rows["Sub-optic grid"]["B"].startswith("4 × 8")
    assert rows["Meta-atoms per sub-optic"]["differs"] == ""
    assert rows["Airy radius @ 450 nm"]["A"] == "—"  # a wavelength only B has
