"""End-to-end fixtures (the harness itself is harness.py)."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import DEFAULT_TEST_TIMEOUT, Cove, live_servers, sanitizer_excerpt


def _start(state_dir: Path, extra_args: list[str] | None = None) -> Cove:
    cove = Cove(state_dir, extra_args)
    live_servers.append(cove)
    cove.start()
    return cove


def _finish(cove: Cove) -> None:
    """Stop the server (if still running), then fail on an unclean exit or any sanitizer report."""
    was_running = cove.running
    rc = cove.stop()
    live_servers.remove(cove)
    problems = []
    if was_running and rc != 0:
        problems.append(
            "did not exit within 10 s of SIGTERM (killed)" if rc is None else f"exited {rc} on SIGTERM, not 0"
        )
    left = cove.leftover_processes()
    if left:
        cove.kill()
        problems.append("left processes running after it exited:\n  " + "\n  ".join(left))
    reports = sanitizer_excerpt(cove.stderr_text())
    if reports:
        problems.append(f"sanitizer report in its stderr ({cove.stderr_path}):\n{reports}")
    if problems:
        pytest.fail("cove serve " + "\n".join(problems) + "\n" + cove.log_tail(), pytrace=False)
    if not os.environ.get("COVE_KEEP_STATE"):
        shutil.rmtree(cove.state_dir, ignore_errors=True)


def _state_dir() -> Path:
    # Short and under /tmp: the server may put Unix sockets in it, whose paths must stay under 108 bytes.
    return Path(tempfile.mkdtemp(prefix="cove-e2e-"))


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT))


def default_args() -> list[str] | None:
    """COVE_TEST_RUNTIME=linux runs the suite's default servers with the linux runtime (scripts/test.sh does so
    for the sandbox tests), COVE_TEST_RUNTIME=gvisor with sandboxes under gVisor (runsc); otherwise they use the
    process runtime."""
    kind = os.environ.get("COVE_TEST_RUNTIME")
    if kind == "gvisor":
        why = gvisor_unavailable()
        if why:
            raise pytest.UsageError(f"COVE_TEST_RUNTIME=gvisor: {why}")
        return gvisor_runtime_args()
    return linux_runtime_args() if kind == "linux" else None


@pytest.fixture(scope="session")
def cove():
    """The shared server for the session. At teardown it must exit 0 on SIGTERM with no sanitizer report."""
    server = _start(_state_dir(), default_args())
    yield server
    _finish(server)


def image_cache_dir() -> Path:
    """Layers and built images shared by every linux-runtime server of the test run (and of later runs): a
    Debian base and a debian_slim build take minutes the first time and milliseconds after."""
    d = Path(os.environ.get("COVE_TEST_IMAGE_DIR", Path(__file__).resolve().parents[2] / "build" / "test-images"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def linux_runtime_args() -> list[str]:
    return ["--runtime", "linux", "--isolation", "linux", "--image-dir", str(image_cache_dir())]


def find_runsc() -> str | None:
    """gVisor's runsc as `cove serve` finds it: $COVE_RUNSC, else where scripts/runsc.sh caches it, else PATH."""
    if os.environ.get("COVE_RUNSC"):
        return os.environ["COVE_RUNSC"] if os.access(os.environ["COVE_RUNSC"], os.X_OK) else None
    script = Path(__file__).resolve().parents[2] / "scripts" / "runsc.sh"
    try:
        path = subprocess.run([script, "--path"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        path = ""
    if path and os.access(path, os.X_OK):
        return path
    return shutil.which("runsc")


def gvisor_unavailable() -> str | None:
    """Why gVisor tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "gVisor (runsc) and the linux runtime need root"
    if find_runsc() is None:
        return "gVisor's runsc is not installed (scripts/runsc.sh builds it)"
    return None


def gvisor_runtime_args(isolation: str = "sandboxes=gvisor") -> list[str]:
    return ["--runtime", "linux", "--isolation", isolation, "--runsc", find_runsc(),
            "--image-dir", str(image_cache_dir())]


@pytest.fixture(scope="session")
def gvisor_cove():
    """A server whose sandboxes run under gVisor (runsc); functions under the linux runtime."""
    why = gvisor_unavailable()
    if why:
        pytest.skip(why)
    server = _start(_state_dir(), gvisor_runtime_args())
    yield server
    _finish(server)


@pytest.fixture
def gvisor_everything_cove():
    """A server of the test's own with functions under gVisor too (`--isolation gvisor`)."""
    why = gvisor_unavailable()
    if why:
        pytest.skip(why)
    server = _start(_state_dir(), gvisor_runtime_args("gvisor"))
    yield server
    _finish(server)


@pytest.fixture(scope="session")
def linux_cove():
    """A server with the linux runtime (namespaces, overlayfs, cgroups: needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("the linux runtime needs root")
    server = _start(_state_dir(), linux_runtime_args())
    yield server
    _finish(server)


@pytest.fixture
def fresh_linux_cove():
    """A linux-runtime server of the test's own (restarts): `.stop()` / `.start()` reuse its state directory."""
    if os.geteuid() != 0:
        pytest.skip("the linux runtime needs root")
    server = _start(_state_dir(), linux_runtime_args())
    yield server
    _finish(server)


@pytest.fixture
def fresh_cove():
    """A server of the test's own (restart tests, signals): `.stop()` / `.start()` reuse its state directory.
    At teardown it is stopped if still running and checked like the session server."""
    server = _start(_state_dir(), default_args())
    yield server
    _finish(server)


@pytest.fixture(autouse=True)
def _no_new_sanitizer_reports():
    """Blame a sanitizer report on the test during which it appeared, not only on the session's end."""
    yield
    for server in list(live_servers):
        report = server.new_sanitizer_reports()
        if report:
            pytest.fail(f"sanitizer report in {server.stderr_path} during this test:\n{report}", pytrace=False)
