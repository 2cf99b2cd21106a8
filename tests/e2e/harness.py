"""The end-to-end harness: a real Cove server on 127.0.0.1 with a temporary state directory, driven by the
official, unmodified `modal` client from the repository's .venv. The fixtures are in conftest.py.

The client reads its configuration (server URL, token) from the environment, so every client scenario runs
as a subprocess (`modal run ...` or `python -c ...`) with `Cove.env`; nothing here imports modal.

Environment:
  COVE_BIN            the server binary (default build/cove; the sanitizer run uses build-asan/cove)
  COVE_PYTHON         interpreter the containers run (default: this interpreter, i.e. .venv/bin/python)
  COVE_START_TIMEOUT  seconds to wait for client.env (default 30)
  COVE_KEEP_STATE     keep each server's state directory (/tmp/cove-e2e-*) even when all went well; it is
                      always kept when the server misbehaved (its log is DIR/cove.stderr)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import h2raw

REPO = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
CLIENT_VERSION = (REPO / "client-version").read_text().strip()

# What ASan, LSan and UBSan print when they find something. Any of these in the server's stderr fails the run.
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "AddressSanitizer:DEADLYSIGNAL",
    "runtime error:",
    "SUMMARY: UndefinedBehaviorSanitizer",
)

CLIENT_ENV_KEYS = ("MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")
DEFAULT_TEST_TIMEOUT = 240  # seconds, per test (pytest-timeout); a hung server must not hang CI
# After this many client commands time out against one server, the rest fail at once: a hung server would
# otherwise cost every remaining test its full timeout.
MAX_CLIENT_TIMEOUTS = 3


def cove_bin() -> Path:
    path = Path(os.environ.get("COVE_BIN", "build/cove"))
    return path if path.is_absolute() else REPO / path


def venv_bin(name: str) -> Path:
    """A console script of the interpreter running the tests (the repository's .venv)."""
    path = Path(sys.executable).parent / name
    return path if path.exists() else REPO / ".venv" / "bin" / name


def parse_env_lines(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def without_modal_settings(environ) -> dict[str, str]:
    """The environment minus MODAL_* settings: a developer's own profile or token must not leak into the
    server (and its containers) or the clients under test."""
    return {k: v for k, v in environ.items() if not k.startswith("MODAL_")}


def client_env(server_env: dict[str, str], state_dir: Path) -> dict[str, str]:
    """The environment a user's shell would have after sourcing client.env: ours without MODAL_* settings,
    plus the three variables, loopback exempt from proxies, and a config path of its own so that
    ~/.modal.toml is never read."""
    env = without_modal_settings(os.environ)
    env.update(server_env)
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
    env.update(
        NO_PROXY=no_proxy,
        no_proxy=no_proxy,
        MODAL_DISABLE_API_PROXY="1",  # a real client setting (modal/config.py: disable_api_proxy)
        MODAL_CONFIG_PATH=str(state_dir / "no-modal.toml"),
        COLUMNS="200",  # rich wraps at 80 columns without a terminal; keep output lines whole
        PYTHONUNBUFFERED="1",
    )
    return env


class Cove:
    """One `cove serve` process and its state directory. Restartable on the same state directory."""

    def __init__(self, state_dir: Path, extra_args: list[str] | None = None):
        # The process runtime unless a test asks for another: most tests are about the API, not isolation.
        self.extra_args = list(extra_args) if extra_args is not None else ["--runtime", "process"]
        self.state_dir = state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = state_dir / "cove.stderr"
        self.proc: subprocess.Popen | None = None
        self.server_env: dict[str, str] = {}
        self._scanned = 0  # how much of stderr has been checked for sanitizer reports
        self.client_timeouts = 0
        self._pgids: list[int] = []

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self, timeout: float | None = None) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        binary = cove_bin()
        if not binary.exists():
            pytest.fail(f"{binary} does not exist: build it first (scripts/setup.sh)", pytrace=False)
        timeout = timeout or float(os.environ.get("COVE_START_TIMEOUT", "30"))
        env_file = self.state_dir / "client.env"
        env_file.unlink(missing_ok=True)  # so that a file from an earlier run is not mistaken for this one's
        cmd = [
            str(binary), "serve",
            "--state-dir", str(self.state_dir),
            "--address", "127.0.0.1",
            "--port", "0",
            "--blob-port", "0",
            "--python", os.environ.get("COVE_PYTHON", sys.executable),
            *self.extra_args,
        ]  # fmt: skip
        with open(self.stderr_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
            log.flush()
            # A session (and process group) of its own: Ctrl-C in the terminal reaches pytest, not the server,
            # and whatever the server leaves behind can be found and killed.
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.state_dir,
                env=without_modal_settings(os.environ),
                start_new_session=True,
            )
        self._pgids.append(self.proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"cove serve exited with {self.proc.returncode} before writing client.env\n{self.log_tail()}",
                    pytrace=False,
                )
            if env_file.exists():
                env = parse_env_lines(env_file.read_text())
                if all(env.get(k) for k in CLIENT_ENV_KEYS):
                    self.server_env = {k: env[k] for k in CLIENT_ENV_KEYS}
                    return
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"no complete {env_file} after {timeout:.0f} s\n{self.log_tail()}", pytrace=False)
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        """Send `sig` and wait up to `timeout` s. Returns the exit status, or None if it had to be killed."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL the server and whatever is left in its process groups (its containers, unless they left)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pgid in self._pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def leftover_processes(self, grace: float = 3) -> list[str]:
        """Live processes still in the process groups of the servers started here (e.g. containers that
        outlived a shutdown), after waiting up to `grace` s for them to go."""
        deadline = time.monotonic() + grace
        while True:
            left = [f"{pid} {cmd}" for pid, pgid, cmd in _processes() if pgid in self._pgids]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- what the client needs ------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        return client_env(self.server_env, self.state_dir)

    @property
    def url(self) -> str:
        return self.server_env["MODAL_SERVER_URL"]

    @property
    def address(self) -> tuple[str, int]:
        m = re.fullmatch(r"http://([^:/]+):(\d+)/?", self.url)
        assert m, f"unexpected MODAL_SERVER_URL {self.url!r}"
        return m.group(1), int(m.group(2))

    def grpc_headers(self, client_type: str = "1", **token) -> list:
        """Metadata as the official client sends it, with this server's token (or MODAL_TOKEN_ID/SECRET=...)."""
        return h2raw.client_headers(dict(self.server_env, **token), CLIENT_VERSION, client_type=client_type)

    def run_modal(self, args, cwd: Path = APPS, timeout: float = 90, env: dict | None = None):
        """`modal ARGS...` (the .venv's CLI) against this server; returns a CompletedProcess (text)."""
        return self._run([str(venv_bin("modal")), *args], cwd, timeout, env)

    def run_python(self, code: str, cwd: Path = APPS, timeout: float = 90, env: dict | None = None):
        """`python -c CODE` with the client's environment; returns a CompletedProcess (text)."""
        return self._run([sys.executable, "-c", code], cwd, timeout, env)

    def _run(self, cmd, cwd, timeout, env):
        if not self.running:
            status = self.proc.returncode if self.proc else None
            pytest.fail(f"cove serve is not running (exit status {status})\n{self.log_tail()}", pytrace=False)
        if self.client_timeouts >= MAX_CLIENT_TIMEOUTS:
            pytest.fail(f"{self.client_timeouts} client commands already timed out against this server", pytrace=False)
        full_env = self.env if env is None else env
        started = time.monotonic()
        try:
            r = subprocess.run(
                cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            self.client_timeouts += 1
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
            pytest.fail(
                f"timed out after {timeout} s: {' '.join(map(str, cmd))}\n--- stdout\n{out}\n--- stderr\n{err}\n"
                f"{self.log_tail()}",
                pytrace=False,
            )
        r.wall_s = time.monotonic() - started
        r.output = r.stdout + r.stderr
        return r

    # -- diagnostics ------------------------------------------------------------------------------------------
    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        tail = "\n".join(self.stderr_text().splitlines()[-lines:])
        return f"--- last {lines} lines of {self.stderr_path}\n{tail}"

    def explain(self, r) -> str:
        """An assertion message for a client subprocess: what it printed, and what the server logged."""
        cmd = " ".join(map(str, r.args))
        return (
            f"`{cmd}` exited {r.returncode} after {getattr(r, 'wall_s', 0):.1f} s\n"
            f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}\n{self.log_tail()}"
        )

    def new_sanitizer_reports(self) -> str:
        """Sanitizer reports written to stderr since the last call (with some context), or ''."""
        text = self.stderr_text()
        fresh, self._scanned = text[self._scanned :], len(text)
        return sanitizer_excerpt(fresh)


def _processes():
    """(pid, process group, command line) of every live (non-zombie) process, from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if fields[0] != "Z":
            yield int(entry.name), int(fields[2]), cmdline


def sanitizer_excerpt(text: str, context: int = 60) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if any(m in line for m in SANITIZER_MARKERS):
            return "\n".join(lines[max(0, i - 3) : i + context])
    return ""


# Every server started by the fixtures and not yet finished (conftest.py checks their stderr after each test).
live_servers: list[Cove] = []
