"""Client versions Cove serves (issue 16): the core app (apps/core.py) with the oldest supported minor's latest
patch, each version in a venv of its own under build/client-venvs (made once per machine from PyPI), and the clear
refusal of versions outside the range (1.4: its containers send no credentials of their own). The matrix is slow: it runs against build/cove only (once per CI run)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import APPS, REPO

# The oldest supported, the oldest minor's latest patch, and the pinned minor's first release.
VERSIONS = ["1.5.0", "1.5.5", "1.6.0"]


def client_venv(version: str) -> Path:
    d = REPO / "build" / "client-venvs" / f"modal-{version}"
    modal_bin = d / "bin" / "modal"
    if not modal_bin.exists():
        subprocess.run([sys.executable, "-m", "venv", str(d)], check=True)
        subprocess.run([str(d / "bin" / "pip"), "install", "-q", f"modal=={version}"], check=True, timeout=600)
    return d


pytestmark = pytest.mark.skipif("asan" in os.environ.get("COVE_BIN", ""),
                                reason="the client matrix runs once per test run, against build/cove")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("version", VERSIONS)
def test_core_app_with_an_older_client(cove, version):
    venv = client_venv(version)
    r = subprocess.run([str(venv / "bin" / "modal"), "run", "core.py"], cwd=APPS, env=cove.env, capture_output=True,
                       text=True, timeout=600)
    r.output = r.stdout + r.stderr
    assert r.returncode == 0, cove.explain(r)
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines() if line[:1].isupper() and " " in line)
    assert lines.get("VERSION") == version, r.stdout
    assert lines.get("REMOTE") == "49", r.stdout
    assert lines.get("MAP") == "[0, 1, 4, 9, 16]", r.stdout
    assert lines.get("SPAWN") == "81", r.stdout
    assert lines.get("CLS") == "105", r.stdout
    assert lines.get("DICT") == "v", r.stdout
    assert lines.get("QUEUE") == "[1, 2]", r.stdout
    assert lines.get("EXEC") == "from-sandbox", r.stdout


def test_a_client_older_than_the_range_is_refused_naming_it(cove):
    venv = client_venv("1.4.3")
    r = subprocess.run([str(venv / "bin" / "modal"), "run", "core.py"], cwd=APPS, env=cove.env, capture_output=True,
                       text=True, timeout=300)
    r.output = r.stdout + r.stderr
    assert r.returncode != 0, r.output
    assert "supports modal client versions 1.5.0 to 1.6.x, but this client is version 1.4.3" in r.output, r.output
