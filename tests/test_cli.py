"""``python -m onn_core`` as a user runs it: the entry point in a real subprocess, the commands through
the same ``main`` in this process (their output and exit codes; no interpreter start-up each)."""

import json
import subprocess
import sys

import pytest

from onn_core.cli import main
from onn_core.design import Design


@pytest.fixture
def run(capsys):
    def command(*args) -> subprocess.CompletedProcess:
        code = main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return command


def test_help():
    result = subprocess.run([sys.executable, "-m", "onn_core", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "design" in result.stdout


def test_default_design_json_is_the_library_default(tmp_path, run):
    result = run("design", "default", "--json")
    assert result.returncode == 0
    assert Design.from_json(result.stdout) == Design()
    path = tmp_path / "design.json"
    path.write_text(result.stdout)
    check = run("design", "check", "--design", str(path), "--json")
    assert check.returncode == 0
    report = json.loads(check.stdout)
    assert report["valid"] is True
    assert report["layout"]["kernels"] == 8
    assert report["optics"]["per_wavelength"][0]["nyquist_q"] < 2
    assert report["warnings"][0]["code"] == "psf_undersampled"


def test_invalid_design_exits_2_with_the_reason(tmp_path, run):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"kernel_size": 9e-3}))
    result = run("design", "check", "--design", str(path), "--json")
    assert result.returncode == 2
    payload = json.loads(result.stdout)
    assert payload["valid"] is False and payload["parameter"] == "kernel_size"
    assert "does not fit" in result.stderr
    missing = run("design", "check", "--design", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "nope.json does not exist" in missing.stderr


def test_text_report(run):
    path_result = run("design", "default")
    assert path_result.returncode == 0
