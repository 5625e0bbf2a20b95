"""Start the Streamlit app as a local server (tests and benchmarks drive it in a real browser).

The flags are those of ``make run``; the server gets a private environment (studio home, job
settings) from the caller. ``CHROMIUM_ARGS`` are what headless Debian Chromium needs on an
offline, sandboxed CI machine: no sandbox (root), no GPU, no background traffic.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update")  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app_server(environment: dict[str, str] | None = None, timeout: float = 60.0, script: Path | None = None):
    """Start ``streamlit run app.py`` (or ``script``) on a free port; returns (process, url) once it is healthy."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(script or "app.py"), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env={**os.environ, **(environment or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"the Streamlit server did not come up:\n{process.stdout.read().decode()[-2000:]}")


def stop_app_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
