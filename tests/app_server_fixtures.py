"""What the ``test_app_server*.py`` modules share: one real MONAI Label server and the helpers that talk to it.

The server runs the app on a temporary copy of the bundled sample studies; the last two PNG image labels are held
back (``server.held_out``) for a test to submit later. It is a session fixture, started once for every module that
asks for ``server`` without defining its own (start-up takes several seconds); ``tests/conftest.py`` registers
these fixtures (``pytest_plugins``). Test modules import the helpers by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
from server_utils import MonaiLabelServer, copy_app, copy_studies, hold_out_image_labels

monailabel_client = pytest.importorskip("monailabel.client")
MONAILabelClient = monailabel_client.MONAILabelClient

# val_split 0: no validation pass, to keep the two training runs short on CPU
CONF = {
    "models": "dsanet,intrasense", "config": "small", "auto_retrain_after": "2", "max_epochs": "1", "val_split": "0",
}


# ---- helpers -----------------------------------------------------------------------------------------------
def load(path):
    from usseg_models.io import load_image

    return load_image(path)


def multipart_infer(url, model, path, params=None, image_id="", timeout=300):
    with open(path, "rb") as f:
        return requests.post(
            f"{url}/infer/{model}",
            params={"image": image_id, "output": "all"} if image_id else {"output": "all"},
            files={"file": (Path(path).name, f)},
            data={"params": json.dumps(params or {})},
            timeout=timeout,
        )


def split_multipart(response, tmp_path: Path, name: str) -> tuple[Path, dict]:
    """Decode MONAI Label's multipart infer answer into (result file, params)."""
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    params, out = None, None
    for part in MultipartDecoder.from_response(response).parts:
        disposition = part.headers.get(b"Content-Disposition", b"").decode()
        if 'name="params"' in disposition:
            params = json.loads(part.content)
        elif 'name="image"' in disposition:
            filename = disposition.split("filename=")[-1].strip('"')
            suffix = "".join(Path(filename).suffixes[-2:]) if filename.endswith(".gz") else Path(filename).suffix
            if filename.endswith(".seg.nrrd"):
                suffix = ".seg.nrrd"
            out = tmp_path / f"{name}{suffix}"
            out.write_bytes(part.content)
    assert params is not None and out is not None, response.text[:500]
    return out, params


def studies_of(folder: Path, pattern: str) -> list[str]:
    return sorted(p.name for p in folder.glob(pattern))


def make_volume_nifti(src_dcm: Path, dest: Path, one_slice: bool = False) -> np.ndarray:
    """Write the cine (or its first frame as one slice) as NIfTI with a non-trivial affine; return the affine."""
    arr, meta = load(src_dcm)
    if meta.get("original_channel_dim") == -1:
        arr = arr[..., 0]
    if one_slice:
        arr = arr[:, :, :1] if arr.ndim == 3 else arr[:, :, None]
    affine = np.array(
        [[0.0, -0.25, 0.0, 12.5], [0.3, 0.0, 0.0, -7.0], [0.0, 0.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0]]
    )
    nib.save(nib.Nifti1Image(arr.astype(np.uint8), affine), str(dest))
    return affine


def start_app_server(tmp: Path, conf, env=None, prepare=None) -> MonaiLabelServer:
    """Start the app (copied into ``tmp/app``) on a copy of the sample studies (``tmp/studies``); ``prepare(studies)``
    runs before the start. The server carries ``studies_dir`` and ``tmp``; the caller stops it."""
    app = copy_app(tmp / "app")
    studies = copy_studies(tmp / "studies")
    if prepare is not None:
        prepare(studies)
    srv = MonaiLabelServer(app, studies, conf=conf, env=env)
    srv.start()
    srv.studies_dir, srv.tmp = studies, tmp
    return srv


# ---- fixtures (session-scoped; registered for every test module by ``pytest_plugins`` in conftest.py) ------------
@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The shared app server (a module that needs a server of its own defines its own ``server`` fixture)."""
    tmp = tmp_path_factory.mktemp("app_server")
    # the last two PNG images start unlabelled; their labels are what a user submits later
    held = tmp / "held_out"
    srv = start_app_server(tmp, CONF, env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "true"},  # the product default
                           prepare=lambda studies: hold_out_image_labels(studies, held))
    srv.held_out = held
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server):
    return MONAILabelClient(server.url, tmpdir=str(server.tmp / "client"))


@pytest.fixture(scope="session")
def cine_id(server):
    ids = studies_of(server.studies_dir, "cine_*.dcm")
    assert ids, f"no cines in {server.studies_dir}"
    return ids[0][: -len(".dcm")]


@pytest.fixture(scope="session")
def image_png(server):
    return sorted(server.studies_dir.glob("image_*.png"))[0]


@pytest.fixture(scope="session")
def image_dcm(server):
    return sorted(server.studies_dir.glob("imagedcm_*.dcm"))[0]
