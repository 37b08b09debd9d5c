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
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from usseg_models.serving import launcher
from usseg_models.serving.launcher import (
    DATASTORE_FILE_EXT,
    free_port,
    prepare_app_dir,
    stop_process_group,
    wait_for_http,
)

__all__ = [
    "REPO_ROOT",
    "SAMPLE_STUDIES",
    "DATASTORE_FILE_EXT",
    "free_port",
    "wait_for_http",
    "copy_app",
    "copy_studies",
    "hold_out_image_labels",
    "MonaiLabelServer",
    "running_server",
    "orthanc_binary",
    "dicomweb_plugin",
    "running_orthanc",
]

REPO_ROOT = Path(__file__).resolve().parents[1]

# Test servers do not start a bootstrap training by themselves (it would compete with the test for the CPU) and
# answer inference with the untrained network instead of 409; tests of those behaviours override both.
TEST_CONF_DEFAULTS = {"bootstrap_min_labels": "0", "untrained_infer": "allow"}
# Nor do they score by themselves: MONAI Label's automatic scoring starts a scoring subprocess (the app imported
# again, then DSANet over every unlabelled cine) at start-up, after each active-learning request and after each
# training, competing with the test for the CPU. The shared server of the test_app_server* modules keeps it on (the
# product default; tests/test_app_server_labels.py checks its queue), and tests of scoring ask for a run.
TEST_ENV_DEFAULTS = {"MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}


class MonaiLabelServer(launcher.MonaiLabelServer):
    """:class:`usseg_models.serving.launcher.MonaiLabelServer` with :data:`TEST_CONF_DEFAULTS` under the given conf
    and :data:`TEST_ENV_DEFAULTS` under the given environment."""

    def __init__(self, app_dir, studies_dir, conf=None, env=None, **kwargs):
        super().__init__(app_dir, studies_dir, conf={**TEST_CONF_DEFAULTS, **dict(conf or {})},
                         env={**TEST_ENV_DEFAULTS, **dict(env or {})}, **kwargs)
SAMPLE_STUDIES = REPO_ROOT / "sample-data" / "studies"


def copy_app(dest: str | os.PathLike) -> Path:
    """A throw-away app folder (``main.py`` only; see :func:`usseg_models.serving.launcher.prepare_app_dir`)."""
    return prepare_app_dir(dest)


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


def hold_out_image_labels(studies: Path, dest: Path, count: int = 2) -> list[Path]:
    """Move the last ``count`` PNG image labels out of ``studies/labels/final`` into ``dest`` (created): those
    images start unlabelled, and the moved labels are what a test submits later. Returns the moved files."""
    dest.mkdir(parents=True, exist_ok=True)
    moved = []
    for label in sorted((studies / "labels" / "final").glob("image_*.png"))[-count:]:
        moved.append(Path(shutil.move(str(label), dest / label.name)))
    return moved


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
        stop_process_group(proc, grace=20)
