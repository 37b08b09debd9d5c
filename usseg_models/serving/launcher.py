"""Start and stop the MONAI Label app's server as a child process (used by the tests, ``usseg bench server|loop``).

The library does not import the app: the app folder (``monailabel_app/``, holding ``main.py``) is located by name
with :func:`importlib.util.find_spec`, which finds a package without running it, or given explicitly.

The server binds 127.0.0.1 on a free port, is waited for by polling ``GET /info/`` (never a fixed sleep), and is
stopped by process group (SIGTERM, then SIGKILL after a grace period), so a training child goes with it.

Examples::

    from usseg_models.serving.launcher import MonaiLabelServer, prepare_app_dir

    app = prepare_app_dir("/tmp/app")         # main.py only; model/ and logs/ stay out of the repository
    server = MonaiLabelServer(app, "/tmp/studies", conf={"models": "dsanet", "config": "small"})
    url = server.start()
    ...
    server.stop()
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from usseg_models.io.formats import DATASTORE_PATTERNS

__all__ = ["APP_DIR", "DATASTORE_FILE_EXT", "free_port", "wait_for_http", "prepare_app_dir", "MonaiLabelServer",
           "stop_process_group"]

APP_PACKAGE = "monailabel_app"


def _app_dir() -> Path:
    """The installed app package's folder, found without importing it."""
    spec = importlib.util.find_spec(APP_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the MONAI Label app package {APP_PACKAGE!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


APP_DIR = _app_dir()
DATASTORE_FILE_EXT = list(DATASTORE_PATTERNS)  # every format the project reads (usseg_models.io.formats)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-4000:] if log and log.exists() else ""


def wait_for_http(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``GET url`` until it answers 200 and return the response; fail early when ``proc`` exits.

    Raises:
        RuntimeError: the process exited first (the message ends with the log's tail).
        TimeoutError: no 200 within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode} before answering:\n{_tail(log)}")
        try:
            r = requests.get(url, timeout=5)
            if r.status_code == 200:
                return r
        except requests.RequestException:
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s:\n{_tail(log)}")


def stop_process_group(proc: subprocess.Popen, grace: float, kill_wait: float = 10.0) -> None:
    """Stop a child started with ``start_new_session=True`` and everything it started: SIGTERM its process group,
    SIGKILL the group when it has not exited after ``grace`` seconds. Nothing happens when it has already exited."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=kill_wait)


def prepare_app_dir(dest: str | os.PathLike) -> Path:
    """A throw-away app folder holding only ``main.py`` (the code comes from the installed package).

    MONAI Label writes ``model/``, ``logs/`` and ``bin/`` into the app folder; pointing it at a copy keeps
    those out of the repository.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(APP_DIR / "main.py", dest / "main.py")
    (dest / "model").mkdir(exist_ok=True)
    return dest


class MonaiLabelServer:
    """A ``monailabel start_server`` child process on 127.0.0.1.

    Args:
        app_dir: app folder (see :func:`prepare_app_dir`).
        studies: studies folder or DICOMweb URL.
        conf: ``--conf`` key/value pairs.
        env: extra environment variables (the datastore extensions and private session/DICOMweb caches under
            ``app_dir`` are set by default).
        port: port to bind (default: a free one).
        log_path: where stdout/stderr go (default ``<app_dir>/server.log``).
    """

    def __init__(
        self,
        app_dir: str | os.PathLike,
        studies: str | os.PathLike,
        conf: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        log_path: str | os.PathLike | None = None,
    ) -> None:
        self.app_dir = Path(app_dir)
        self.studies = str(studies)
        self.conf = dict(conf or {})
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path) if log_path else self.app_dir / "server.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def environment(self) -> dict[str, str]:
        """The child's environment: this interpreter's folder first on PATH, datastore extensions, caches."""
        env = dict(os.environ)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        env["MONAILABEL_PYEXE"] = sys.executable
        env["MONAI_LABEL_DATASTORE_FILE_EXT"] = json.dumps(DATASTORE_FILE_EXT)
        env["MONAI_LABEL_SESSION_PATH"] = str(self.app_dir / "sessions")
        env["MONAI_LABEL_DICOMWEB_CACHE_PATH"] = str(self.app_dir / "dicom-cache")
        env["PYTHONPATH"] = str(APP_DIR.parent) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 180.0) -> str:
        """Start the server and wait until ``GET /info/`` answers 200. Returns the base URL."""
        cmd = [
            sys.executable, "-m", "monailabel.main", "start_server",
            "--app", str(self.app_dir), "--studies", self.studies,
            "--host", "127.0.0.1", "--port", str(self.port),
        ]
        for key, value in self.conf.items():
            cmd += ["--conf", key, str(value)]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.environment(), cwd=str(self.app_dir),
            start_new_session=True,
        )
        try:
            wait_for_http(f"{self.url}/info/", timeout=timeout, proc=self.proc, log=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self.url

    def kill(self) -> None:
        """``kill -9`` the whole process group (server and any training child) without cleanup."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds; also reap leftover children."""
        if self.proc:
            stop_process_group(self.proc, grace, kill_wait=30)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> MonaiLabelServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
