"""Real model servers in virtual environments of their own (their pins clash with ours).

:func:`server_venv` creates ``<venvs>/<name>`` once and reuses it while its requirements are
unchanged; ``<venvs>`` is ``$EXTRACTION_MONITOR_VENVS`` or ``.ci/venvs`` in the repository
(ignored by git, kept between CI runs on one machine). Tests using it carry the
``realservers`` marker and run only with ``EXTRACTION_MONITOR_REAL_SERVERS=1`` (``make
test-real-servers`` sets it); installing MLflow takes minutes on a fresh machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
ENABLED = os.environ.get("EXTRACTION_MONITOR_REAL_SERVERS") == "1"
realservers = pytest.mark.skipif(
    not ENABLED, reason="real MLflow/KServe servers: set EXTRACTION_MONITOR_REAL_SERVERS=1 "
                        "(make test-real-servers); they install into their own virtual environments")


def venvs_dir() -> Path:
    return Path(os.environ.get("EXTRACTION_MONITOR_VENVS") or REPO / ".ci" / "venvs")


def server_venv(name: str, requirements: list[str], timeout: float = 1800) -> Path:
    """The ``bin`` folder of a venv with ``requirements`` installed (created once)."""
    root = venvs_dir() / name
    stamp = root / ".installed"
    wanted = "\n".join(requirements) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return root / "bin"
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
    started = time.monotonic()
    result = subprocess.run([str(root / "bin" / "pip"), "install", "-q", *requirements],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"installing {name} failed: {result.stderr[-1500:]}")
    stamp.write_text(wanted)
    print(f"installed {name} in {time.monotonic() - started:.0f} s")
    return root / "bin"


def wait_http(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a local socket listens on for ``port`` (from /proc/net/tcp)."""
    out = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                out.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return out
