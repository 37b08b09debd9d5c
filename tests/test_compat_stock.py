"""Stock MONAI Label 0.8.5 still has the bugs the app's workarounds fix (``monailabel_app/lib/compat``).

Each test here asserts the **bug**, on MONAI Label as shipped: a real server started with the workarounds left
out (``USSEG_COMPAT_DISABLE``), or MONAI Label's own function called directly. The fixed behaviour is asserted by
the test each workaround names in ``compat.WORKAROUNDS``. The day a MONAI Label release fixes one, its test here
fails: the workaround (and its ``docs/upstream/`` write-up) can then go.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import time

import nibabel as nib
import numpy as np
import pytest
import requests
from server_utils import MonaiLabelServer, copy_app, copy_studies

from monailabel_app.lib import compat

CONF = {"models": "dsanet", "config": "small", "bootstrap_min_labels": "0", "auto_retrain_after": "0",
        "refine_max_steps": "400", "refine_time_budget_s": "60"}


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    root = tmp_path_factory.mktemp("stock")
    srv = MonaiLabelServer(copy_app(root / "app"), copy_studies(root / "studies"), conf=CONF,
                           env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
                                compat.DISABLE_ENV: "request-guards,threaded-routes"})
    srv.start()
    srv.root = root
    yield srv
    srv.stop()


def test_the_switch_names_only_installed_workarounds(monkeypatch):
    monkeypatch.setenv(compat.DISABLE_ENV, "all")
    assert compat.disabled() == set(compat.INSTALLED)
    monkeypatch.setenv(compat.DISABLE_ENV, "auth, safe-random")
    with pytest.raises(ValueError, match="safe-random"):
        compat.disabled()
    monkeypatch.delenv(compat.DISABLE_ENV)
    assert compat.disabled() == set()


def test_stock_request_handling_answers_wrong_requests_with_200_or_500(stock, tmp_path):
    """request-guards: DELETE of a label that is not stored is 200 ``{}``; infer params that are not JSON are 500;
    an error about an uploaded file names the server's temporary copy of it, not the file the user sent."""
    assert "left out (stock behaviour)" in stock.log_text()
    r = requests.delete(f"{stock.url}/datastore/label", params={"id": "../x", "tag": "final"}, timeout=60)
    assert (r.status_code, r.json()) == (200, {})
    r = requests.post(f"{stock.url}/infer/dsanet", params={"image": "cine_000"}, data={"params": "{not json"},
                      timeout=120)
    assert r.status_code == 500
    four_d = tmp_path / "four_d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 2), np.uint8), np.eye(4)), str(four_d))
    r = requests.put(f"{stock.url}/datastore/label", params={"image": "cine_000"},
                     files={"label": ("my_label.nii.gz", four_d.read_bytes())}, timeout=60)
    detail = r.json()["detail"]
    assert r.status_code == 422 and "my_label" not in detail and re.search(r"/tmp[a-z0-9_]{8}\.nii\.gz", detail)


def test_stock_infer_route_blocks_every_other_request(stock, tmp_path):
    """threaded-routes: while one refinement runs on the event loop, ``GET /info/`` sent after it is answered only
    after it (with the workaround, ``tests/test_app_refine.py`` gets ``/info/`` while a refinement runs)."""
    truth = np.asarray(nib.load(str(stock.root / "studies" / "labels" / "final" / "cine_000.nii.gz")).dataobj)
    path = tmp_path / "fix.nii.gz"
    nib.save(nib.Nifti1Image(truth.astype(np.uint8), np.eye(4)), str(path))
    slow = {"corrected_frames": [4], "mode": "adapt", "max_steps": 60, "time_budget_s": 6}
    done: dict[str, float] = {}

    def refine():
        with open(path, "rb") as f:
            r = requests.post(f"{stock.url}/infer/dsanet_refine", params={"image": "cine_000", "output": "json"},
                              files={"label": (path.name, f)}, data={"params": json.dumps(slow)}, timeout=300)
        done["refine"] = time.monotonic()
        return r.status_code

    def info():
        r = requests.get(f"{stock.url}/info/", timeout=300)
        done["info"] = time.monotonic()
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(refine)
        time.sleep(1.5)  # the refinement is adapting now (its budget is 6 s)
        second = pool.submit(info)
        assert (first.result(), second.result()) == (200, 200)
    assert done["info"] >= done["refine"], done  # /info/ waited for the refinement to finish


def test_stock_token_check_refuses_every_token_under_pyjwt_2():
    """auth: MONAI Label's ``from_token`` calls ``jwt.decode(token, key, options=...)`` without ``algorithms``, which
    PyJWT 2 refuses for any token; the app's stand-in passes the accepted algorithms and verifies it."""
    jwt = pytest.importorskip("jwt")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from monailabel_app.lib.compat.auth import _jwt_with_algorithms

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    token = jwt.encode({"sub": "annotator", "exp": int(time.time()) + 60}, key, algorithm="RS256")
    options = {"verify_signature": True, "verify_aud": False, "verify_exp": True}
    with pytest.raises(jwt.exceptions.DecodeError, match="algorithms"):
        jwt.decode(token, public, options=options)  # what stock from_token does
    assert _jwt_with_algorithms(jwt, ["RS256"]).decode(token, public, options=options)["sub"] == "annotator"
