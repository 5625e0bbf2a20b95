"""The run figures: images tiled into one Plotly axes, with physical hover, scale bar and colour bar."""

import numpy as np
import pytest

from onn_core.units import UM
from studio.run_plots import feature_maps_figure, kernels_figure, nice_length, realised_psfs_figure, tile_origins


@pytest.mark.parametrize(("limit", "expected"), [(8.0, 5.0), (10.0, 10.0), (0.37, 0.2), (199.0, 100.0), (2.5, 2.0)])
def test_a_scale_bar_is_the_largest_round_length_that_fits(limit, expected):
    assert nice_length(limit) == pytest.approx(expected)


def test_nice_length_refuses_a_non_positive_length():
    with pytest.raises(ValueError, match="positive"):
        nice_length(0.0)


def test_tiles_are_laid_out_row_by_row_with_gaps():
    assert tile_origins((7, 7), 5, columns=3, gap=1) == [(0, 0), (0, 8), (0, 16), (8, 0), (8, 8)]


def _trace(figure, index=0):
    return figure.data[index]


def test_kernels_land_in_their_tiles_with_centred_micron_hover():
    rng = np.random.default_rng(0)
    kernels = rng.normal(size=(5, 7, 7))
    pitch = 3 * UM
    figure = kernels_figure(kernels, pitch, columns=3)
    assert len(figure.data) == 1  # one heatmap, one axes, however many kernels
    z, where = np.asarray(_trace(figure).z, dtype=float), np.asarray(_trace(figure).customdata, dtype=float)
    assert z.shape == (15, 23)
    np.testing.assert_array_equal(z[8:15, 8:15], kernels[4])  # K4: second row, second column
    assert np.isnan(z[7]).all() and np.isnan(z[:, 7]).all()  # the gaps stay transparent
    assert np.isnan(z[8:, 16:]).all()  # no sixth kernel
    # Hover: the tile's index and the position in µm from the kernel's centre tap.
    np.testing.assert_array_equal(where[8 + 3, 8 + 3], [4, 0, 0])
    np.testing.assert_allclose(where[8, 8 + 6], [4, 9, -9])  # top-right tap: x +3 taps, y −3 taps
    zmax = np.abs(kernels).max()
    assert _trace(figure).zmin == pytest.approx(-zmax) and _trace(figure).zmax == pytest.approx(zmax)
    texts = [a.text for a in figure.layout.annotations]
    assert texts[:5] == ["K0", "K1", "K2", "K3", "K4"] and "10 µm" in texts  # 0.8 × 21 µm → a 10 µm bar
    assert figure.layout.yaxis.scaleanchor == "x"  # equal aspect
    assert _trace(figure).colorbar.title.text == "weight"


def test_realised_psfs_put_k_minus_under_k_plus_on_one_power_scale():
    plus, minus = np.full((4, 5, 5), 0.01), np.full((4, 5, 5), 0.03)
    figure = realised_psfs_figure(plus, minus, 2 * UM)
    z = np.asarray(_trace(figure).z, dtype=float)
    assert z.shape == (11, 23)  # two rows of four
    assert np.allclose(z[:5, :5], 0.01) and np.allclose(z[6:, :5], 0.03)
    assert _trace(figure).zmin == 0 and _trace(figure).zmax == pytest.approx(0.03)
    assert [a.text for a in figure.layout.annotations][:8] == [f"K{k}⁺" for k in range(4)] + [
        f"K{k}⁻" for k in range(4)
    ]
    assert realised_psfs_figure(plus, None, 2 * UM).layout.annotations[3].text == "K3⁺"


def test_feature_maps_show_the_input_in_grey_and_the_maps_on_a_signed_scale():
    image = np.linspace(0, 1, 28 * 28).reshape(28, 28)
    maps = np.stack([image - 0.5, 0.5 - image])
    figure = feature_maps_figure(image, maps, 10 * UM)
    grey, signed = figure.data
    assert grey.colorscale[0][1].startswith("rgb(0") and not grey.showscale
    z = np.asarray(signed.z, dtype=float)
    np.testing.assert_allclose(z[:, 29:57], maps[0])
    assert np.isnan(z[:, :28]).all()  # the input's tile belongs to the grey trace
    assert signed.zmin == pytest.approx(-0.5) and signed.colorbar.title.text == "signal"


def test_the_error_curve_shows_every_draw_and_the_spread_and_progress_names_its_units():
    from types import SimpleNamespace

    from onn_core.jobs.kinds import epoch_text
    from studio.run_plots import error_curve_figure, yield_figure

    points = [{"factor": f, "mean": m, "std": s, "scores": [m - s, m + s]}
              for f, m, s in ((0.0, 0.95, 0.0), (1.0, 0.9, 0.02), (2.0, 0.8, 0.05))]  # fmt: skip
    band, draws, mean = error_curve_figure(points, "accuracy").data
    assert list(draws.y) == pytest.approx([95, 95, 88, 92, 75, 85]) and list(mean.y) == pytest.approx([95, 90, 80])
    assert list(band.y) == pytest.approx([95, 92, 85, 75, 88, 95])  # mean + std out, mean − std back
    marks = [a.xanchor for a in yield_figure([0.9, 0.91], 0.95, 0.951, "accuracy").layout.annotations]
    assert sorted(marks) == ["left", "right"]  # close marks, labels on opposite sides
    update = SimpleNamespace(phase="fabricate", epoch=1, epochs=1, step=2, steps=4, eta_s=150.0, metrics={})
    assert epoch_text(update) == "Monte-Carlo draw 2/4, ETA 2 min"
