"""The installable package: what `pip install .` puts on a node, and its pins kept with requirements.txt."""

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==([^\s;#]+)\s*(#.*)?", line)
        if match:
            found[match[1].lower()] = match[2]
    return found


def test_the_package_pins_exactly_what_requirements_txt_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + [pin for extra in project["optional-dependencies"].values()
                                                for pin in extra]  # fmt: skip
    assert all("==" in pin for pin in declared), "every dependency is pinned exactly"
    assert pins(declared) == pins((ROOT / "requirements.txt").read_text().splitlines())
    assert pins(project["dependencies"])["torch"] == "2.13.0"  # the CPU wheel; a range pulls a CUDA build


def test_the_wheel_carries_the_library_its_data_and_the_onn_studio_command(installed_studio):
    wheel, _ = installed_studio
    names = set(zipfile.ZipFile(wheel).namelist())
    assets = ("meta_atoms/sin_750nm.csv", "example_run/model.pt", "sweeps/classification.jsonl",
              "sweeps/specs/classification.json", "estimator_calibration.json", "ntkd_regimes_summary.json")
    for shipped in ("onn_core/cli.py", "onn_core/jobs/remote.py", "estimators/sweep.py",
                    *(f"onn_core/_assets/{name}" for name in assets)):  # fmt: skip
        assert shipped in names, shipped
    assert not any(name.startswith(("tests/", "bench/", "pages/", "studio/")) for name in names)
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "onn-studio = onn_core.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_package_works_outside_the_checkout(installed_studio, tmp_path):
    """From another folder, with only the installed package on the path: the command answers and
    the shipped data is found inside the package."""
    _, site = installed_studio
    script = (
        "import sys, json\n"
        "from onn_core.paths import asset_path, running_from_checkout\n"
        "from onn_core.training.catalog import EXAMPLE_RUN\n"
        "from onn_core.optics.metasurface import DEFAULT_TABLE_PATH\n"
        "import onn_core, estimators\n"
        "print(json.dumps({'checkout': running_from_checkout(), 'onn_core': onn_core.__file__,\n"
        "  'estimators': estimators.__file__, 'table': DEFAULT_TABLE_PATH.is_file(),\n"
        "  'example': (EXAMPLE_RUN / 'model.pt').is_file(), 'assets': str(asset_path())}))\n"
        "sys.argv = ['onn-studio', '--help']\n"
        "from onn_core.cli import main\n"
        "main()\n"
    )  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(site), "ONN_STUDIO_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    import json

    found = json.loads(result.stdout.splitlines()[0])
    assert not found["checkout"] and found["table"] and found["example"]
    for module in ("onn_core", "estimators"):
        assert found[module].startswith(str(site)), found
    assert found["assets"].startswith(str(site))
    assert "usage: onn-studio" in result.stdout and "sweep" in result.stdout
