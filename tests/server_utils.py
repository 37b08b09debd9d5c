"""Start and stop a real MONAI Label server and a real Orthanc for tests (also used by the Slicer tests).

Both run as child processes on 127.0.0.1 on free ports, are waited for by polling HTTP (never a fixed
sleep), and are stopped by process group id (SIGTERM, then SIGKILL after a grace period).

Examples::

    from server_utils import copy_app, copy_studies, running_server

    app = copy_app(tmp_path / "app")          # main.py in a temp folder: model/ and logs/ stay out of the repo
    studies = copy_studies(tmp_path / "studies")
    with running_server(app, studies, conf={"models": "dsanet,intrasense"}) as url:
        requests.get(f"{url}/info/").json()

    with running_orthanc(tmp_path / "orthanc") as (dicomweb_url, pid):
        ...
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import requests

__all__ = [
    "REPO_ROOT",
    "SAMPLE_STUDIES",
    "DATASTORE_FILE_EXT",
    "free_port",
    "wait_for_http",
    "copy_app",
    "copy_studies",
    "server_env",
    "MonaiLabelServer",
    "running_server",
    "orthanc_binary",
    "dicomweb_plugin",
    "running_orthanc",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_STUDIES = REPO_ROOT / "sample-data" / "studies"
DATASTORE_FILE_EXT = ["*.dcm", "*.png", "*.jpg", "*.nii.gz", "*.nii", "*.nrrd"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``GET url`` until it answers 200; fail early when ``proc`` exits. Returns the response."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            raise RuntimeError(f"process for {url} exited with {proc.returncode} before answering:\n{tail}")
        try:
            r = requests.get(url, timeout=5)
            if r.status_code == 200:
                return r
        except requests.RequestException:
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s:\n{tail}")


def copy_app(dest: str | os.PathLike) -> Path:
    """A throw-away app folder (``main.py`` only; the code comes from the installed ``monailabel_app``).

    MONAI Label writes ``model/``, ``logs/`` and ``bin/`` into the app folder, so tests never point the
    server at the repository's ``monailabel_app``.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / "monailabel_app" / "main.py", dest / "main.py")
    (dest / "model").mkdir(exist_ok=True)
    return dest


def copy_studies(dest: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Copy a studies folder (default: the bundled ``sample-data/studies``) without its datastore index.

    When no source is given and the bundled set is missing, the same set is generated with
    :func:`usseg_models.data.sample_set.generate_sample_set` (what ``usseg sample-data`` writes).
    """
    dest = Path(dest)
    if source is None and not (SAMPLE_STUDIES.is_dir() and any(SAMPLE_STUDIES.iterdir())):
        from usseg_models.data.sample_set import generate_sample_set

        generate_sample_set(dest)
        return dest
    source = Path(source) if source else SAMPLE_STUDIES
    if not source.is_dir():
        raise FileNotFoundError(f"no studies folder at {source}")
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("datastore_v2.json", ".lock", "*.part"))
    return dest


def server_env(extra: Mapping[str, str] | None = None, workdir: Path | None = None) -> dict[str, str]:
    """Environment for a test server: our venv first on PATH, the datastore extensions, private caches."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["MONAILABEL_PYEXE"] = sys.executable
    env["MONAI_LABEL_DATASTORE_FILE_EXT"] = json.dumps(DATASTORE_FILE_EXT)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    if workdir is not None:
        env["MONAI_LABEL_SESSION_PATH"] = str(workdir / "sessions")
        env["MONAI_LABEL_DICOMWEB_CACHE_PATH"] = str(workdir / "dicom-cache")
    env.update(extra or {})
    return env


class MonaiLabelServer:
    """A ``monailabel start_server`` child process on 127.0.0.1.

    Args:
        app_dir: app folder (see :func:`copy_app`).
        studies: studies folder or DICOMweb URL.
        conf: ``--conf`` key/value pairs.
        env: extra environment variables.
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

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 180.0) -> str:
        """Start the server and wait until ``GET /info/`` answers 200. Returns the base URL."""
        cmd = [
            sys.executable, "-m", "monailabel.main", "start_server",
            "--app", str(self.app_dir), "--studies", self.studies,
            "--host", "127.0.0.1", "--port", str(self.port),
        ]
        for key, value in self.conf.items():
            cmd += ["--conf", key, str(value)]
        env = server_env(self.extra_env, workdir=self.app_dir)
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.app_dir), start_new_session=True
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
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        # children (a training run) may outlive the leader: clear the group
        if self.proc:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def running_server(
    app_dir: str | os.PathLike,
    studies_dir: str | os.PathLike,
    conf: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 180.0,
) -> Iterator[str]:
    """Run a MONAI Label server for the ``with`` block and yield its base URL (``http://127.0.0.1:PORT``)."""
    server = MonaiLabelServer(app_dir, studies_dir, conf=conf, env=env)
    server.start(timeout=timeout)
    try:
        yield server.url
    finally:
        server.stop()


def orthanc_binary() -> str | None:
    """Path of the ``Orthanc`` executable, or ``None``."""
    return shutil.which("Orthanc") or (shutil.which("Orthanc", path="/usr/sbin:/usr/bin"))


def dicomweb_plugin() -> str | None:
    """Path of Orthanc's DICOMweb plugin (Debian package ``orthanc-dicomweb``), or ``None``."""
    candidates = [
        Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
        *sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*")),
    ]
    return next((str(p) for p in candidates if p.exists()), None)


@contextlib.contextmanager
def running_orthanc(tmpdir: str | os.PathLike, timeout: float = 60.0) -> Iterator[tuple[str, int]]:
    """Run a private Orthanc (loopback only, own storage, DICOMweb on) and yield ``(dicomweb_url, pid)``."""
    binary, plugin = orthanc_binary(), dicomweb_plugin()
    if not binary or not plugin:
        raise FileNotFoundError(
            "Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
        )
    tmpdir = Path(tmpdir)
    (tmpdir / "storage").mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "usseg-test",
        "StorageDirectory": str(tmpdir / "storage"),
        "IndexDirectory": str(tmpdir / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False},
    }
    config_path = tmpdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = tmpdir / "orthanc.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT, cwd=str(tmpdir), start_new_session=True
        )
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_for_http(f"{base}/system", timeout=timeout, proc=proc, log=log_path)
        yield f"{base}/dicom-web", proc.pid
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
