"""Design search: a seeded Optuna study over the surrogate, its front, constraints and resumption."""

from __future__ import annotations

import json

import pytest

from estimators.search import run_search, search_space
from onn_core.cli import main
from onn_core.design import Design
from onn_core.errors import SearchError


@pytest.fixture
def studio_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path / "home"))
    return tmp_path


def _dominates(a: dict, b: dict) -> bool:
    no_worse = a["accuracy"] >= b["accuracy"] and a["area_mm2"] <= b["area_mm2"]
    return no_worse and (a["accuracy"] > b["accuracy"] or a["area_mm2"] < b["area_mm2"])


def test_a_small_budget_finds_a_non_dominated_front_of_buildable_designs(studio_home):
    import optuna

    result = run_search("mnist", studio_home / "search", budget=60, seed=1)
    front = result["front"]
    assert result["trials"] == 60 and front
    assert [r["area_mm2"] for r in front] == sorted(r["area_mm2"] for r in front)
    study = optuna.load_study(study_name="design-search", storage=f"sqlite:///{studio_home / 'search' / 'study.db'}")
    evaluated = [t.user_attrs["row"] for t in study.trials if t.user_attrs.get("feasible")]
    space = search_space("mnist")
    for row in front:
        assert not any(_dominates(other, row) for other in evaluated), row["design_id"]
        design = Design.from_dict(row["design"])  # every front design can be built
        assert design.design_id == row["design_id"] and design.kernel_count == row["kernels"]
        assert row["area_mm2"] == pytest.approx(design.metasurface_height * design.metasurface_width * 1e6)
        for name, (low, high) in space.bounds.items():
            assert low * (1 - 1e-9) <= getattr(design, name) <= high * (1 + 1e-9)
        assert row["low"] <= row["accuracy"] <= row["high"] and row["macs"] > 0


def test_a_resumed_search_continues_its_trial_count_and_refuses_another_question(studio_home):
    out = studio_home / "search"
    first = run_search("mnist", out, budget=20, seed=0)
    again = run_search("mnist", out, budget=35, seed=0)
    assert (first["trials"], again["trials"]) == (20, 35)
    with pytest.raises(SearchError, match="another question"):
        run_search("mnist", out, budget=40, objectives=["accuracy", "kernels"])


def test_fixed_fields_hold_and_an_infeasible_bound_set_says_why(studio_home):
    result = run_search("mnist", studio_home / "held", budget=15, fixed="kernel_taps=5,sensor_distance=3e-3")
    assert all(r["design"]["kernel_taps"] == 5 and r["design"]["sensor_distance"] == 3e-3 for r in result["front"])
    # Apertures of 1–1.5 mm on a metasurface of at most 0.5 mm: nothing fits.
    bounds = "kernel_size=1e-3:1.5e-3,metasurface_height=3e-4:5e-4,metasurface_width=3e-4:5e-4"
    with pytest.raises(SearchError, match="no design within these bounds"):
        run_search("mnist", studio_home / "none", budget=12, bounds=bounds)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"objectives": ["area", "kernels"]}, "must include accuracy"),
        ({"objectives": ["accuracy", "speed"]}, "two or more of"),
        ({"budget": 0}, "whole number of trials"),
        ({"fixed": "pitch=3e-7"}, "not a design field"),
        ({"bounds": "kernel_size=2e-3:1e-3"}, "0 < LOW ≤ HIGH"),
        ({"bounds": "kernel_size=abc:1e-3"}, "not a number"),
        ({"bounds": "kernel_taps=4:4"}, "no odd tap count"),
        ({"bounds": "meta_atom_pitch=2e-7:3e-7"}, "not a free field"),
    ],
)
def test_bad_requests_are_refused_in_the_designers_terms(studio_home, options, message):
    with pytest.raises(SearchError, match=message):
        run_search("mnist", studio_home / "bad", **{"budget": 5, **options})


def test_search_cli_json_with_an_exact_check(studio_home, capsys):
    settings = {"train_size": 60, "val_size": 30, "test_size": 60, "inits": 1}
    result = run_search("mnist", studio_home / "exact", budget=15, exact_top=1, exact_settings=settings)
    checked = [r for r in result["front"] if "exact_accuracy" in r]
    assert len(checked) == 1 and 0 < checked[0]["exact_accuracy"] <= 1
    code = main(["search", "--dataset", "mnist", "--budget", "10", "--out", str(studio_home / "cli"), "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and set(printed) >= {"front", "trials", "seconds", "study"} and printed["trials"] == 10
    code = main(["search", "--dataset", "mnist", "--budget", "5", "--out", str(studio_home / "cli2"),
                 "--objectives", "area,kernels"])  # fmt: skip
    assert code == 2 and "must include accuracy" in capsys.readouterr().err


def test_segmentation_searches_its_own_ranges_with_the_students_taps(studio_home):
    result = run_search("shapes-seg", studio_home / "seg", budget=20, seed=0)
    assert result["front"]
    for row in result["front"]:
        assert row["design"]["kernel_taps"] == 3 and row["design"]["input_height"] == 64
        assert 3 <= row["kernels"] <= 72
    with pytest.raises(SearchError, match="fixed at 3"):
        run_search("shapes-seg", studio_home / "seg2", budget=5, bounds="kernel_taps=3:7")


def test_data_no_sweep_covers_is_searched_with_an_exact_estimate_a_trial(studio_home):
    with pytest.raises(SearchError, match="--exact --budget"):
        run_search("digits", studio_home / "surrogate", budget=5)
    with pytest.raises(SearchError, match="at most 200"):
        run_search("digits", studio_home / "big", budget=500, exact=True)
    settings = {"train_size": 40, "val_size": 20, "test_size": 40, "inits": 1}
    result = run_search("digits", studio_home / "exact", budget=4, exact=True, exact_settings=settings,
                        bounds="metasurface_height=5e-4:2e-3,metasurface_width=5e-4:2e-3")  # fmt: skip
    assert result["trials"] == 4 and result["surrogate"]["kind"] == "exact NTK regression"
    assert result["surrogate"]["n_points"] == result["feasible_trials"] >= 1  # one estimate a buildable trial
    assert all(0 < row["accuracy"] <= 1 and row["low"] <= row["accuracy"] <= row["high"] for row in result["front"])


def test_energy_trades_bits_and_kernels_against_accuracy_and_its_model_is_part_of_the_question(studio_home, capsys):
    from onn_core.models import EnergyModel, build_student, count_cost, energy_per_image

    out = studio_home / "energy"
    result = run_search("mnist", out, objectives=["accuracy", "energy"], budget=40, seed=2,
                        bounds="sensor_bit_depth=4:12")  # fmt: skip
    front = result["front"]
    assert front and result["energy_model"] == {"mac_energy_j": 4.6e-12, "conversion_step_energy_j": 1e-12}
    for row in front:  # each row's energy is the model's answer for its own student, bits and sensor
        design = Design.from_dict(row["design"])
        cost = count_cost(build_student("compressed-meta", design, 10), design.input_shape)
        assert row["energy_j"] == pytest.approx(energy_per_image(cost, design)["total_j"], rel=1e-3)
        assert isinstance(row["warnings"], list)
    for a in front:  # non-dominated in accuracy and energy
        assert not any(b["accuracy"] >= a["accuracy"] and b["energy_j"] < a["energy_j"] for b in front if b is not a)
    assert len({row["design"]["sensor_bit_depth"] for row in front}) > 1  # the bit depth is a lever it uses
    with pytest.raises(SearchError, match="another question"):
        run_search("mnist", out, objectives=["accuracy", "energy"], budget=45, bounds="sensor_bit_depth=4:12",
                   energy_model=EnergyModel(conversion_step_energy=5e-12))  # fmt: skip
    code = main(["search", "--dataset", "mnist", "--budget", "5", "--objectives", "accuracy,energy",
                 "--mac-energy", "-1", "--out", str(studio_home / "bad-energy")])  # fmt: skip
    assert code == 2 and "mac_energy must be a positive energy" in capsys.readouterr().err
