"""``python -m onn_core`` as a user runs it: real subprocesses, real exit codes."""

import json
import subprocess
import sys

from onn_core.design import Design


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "onn_core", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_help():
    result = run("--help")
    assert result.returncode == 0 and "design" in result.stdout


def test_default_design_json_is_the_library_default(tmp_path):
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


def test_invalid_design_exits_2_with_the_reason(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"kernel_size": 9e-3}))
    result = run("design", "check", "--design", str(path), "--json")
    assert result.returncode == 2
    payload = json.loads(result.stdout)
    assert payload["valid"] is False and payload["parameter"] == "kernel_size"
    assert "does not fit" in result.stderr
    missing = run("design", "check", "--design", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "nope.json does not exist" in missing.stderr


def test_text_report():
    path_result = run("design", "default")
    assert path_result.returncode == 0
