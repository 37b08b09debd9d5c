"""The auto-retrain count of new labels is kept in the datastore's folder and survives a server restart."""

from __future__ import annotations

import json
import logging
import time

import pytest
import requests
from server_utils import MonaiLabelServer, copy_app, copy_studies, hold_out_image_labels

from monailabel_app.lib.label_counter import COUNTER_FILE, NewLabelCounter

# val_split 0 and one epoch keep the auto-started training short; it need not finish for the test
CONF = {"models": "intrasense", "config": "small", "auto_retrain_after": "2", "max_epochs": "1", "val_split": "0"}


def _save(url, label):
    r = requests.put(
        f"{url}/datastore/label", params={"image": label.stem, "tag": "final"},
        files={"label": (label.name, label.read_bytes())}, timeout=60,
    )
    assert r.status_code == 200, r.text[:300]
    return r.json()


def _intrasense_tasks(url):
    r = requests.get(f"{url}/train/", params={"all": True}, timeout=30)
    if r.status_code != 200:  # MONAI Label answers 404 while it has no training task at all
        return []
    return [t for t in r.json() if t.get("request", {}).get("model") == "intrasense"]


@pytest.mark.server
@pytest.mark.slow
def test_label_saved_before_restart_counts_towards_auto_retrain(tmp_path):
    app = copy_app(tmp_path / "app")
    studies = copy_studies(tmp_path / "studies")
    held = tmp_path / "held_out"
    first, second = hold_out_image_labels(studies, held)
    counter_file = studies / COUNTER_FILE

    server = MonaiLabelServer(app, studies, conf=CONF)
    server.start()
    try:
        answer = _save(server.url, first)
        assert answer["new_labels"]["intrasense"] == 1 and "train" not in answer, answer
        assert json.loads(counter_file.read_text())["new_labels"]["intrasense"] == 1
    finally:
        server.stop()

    server = MonaiLabelServer(app, studies, conf=CONF)
    server.start()
    try:
        assert _intrasense_tasks(server.url) == []  # nothing trains before the second label
        answer = _save(server.url, second)
        assert answer["new_labels"]["intrasense"] == 2 and "train" in answer, answer
        deadline = time.monotonic() + 30
        while not (tasks := _intrasense_tasks(server.url)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert tasks and tasks[-1]["status"] in ("RUNNING", "DONE"), tasks
        assert json.loads(counter_file.read_text())["new_labels"]["intrasense"] == 0  # reset as training started
    finally:
        server.stop()


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]", b'{"new_labels": 3}', b'{"new_labels": {"intrasense": -4}}',
     b'{"new_labels": {"intrasense": "7"}}', b""],
)
def test_corrupt_counter_file_warns_and_counts_from_zero(tmp_path, caplog, content):
    path = tmp_path / COUNTER_FILE
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="monailabel_app.lib.label_counter"):
        counter = NewLabelCounter(path, ["intrasense", "dsanet"])
    assert counter.counts() == {"intrasense": 0, "dsanet": 0}
    assert any("counting from zero" in r.getMessage() for r in caplog.records)
    assert counter.increment("intrasense") == 1  # the bad file is replaced by a good one
    assert json.loads(path.read_text()) == {"new_labels": {"dsanet": 0, "intrasense": 1}}
    assert not list(tmp_path.glob("*.part"))


def test_counter_round_trip_keeps_other_models_and_survives_missing_or_unwritable_folder(tmp_path, caplog):
    path = tmp_path / COUNTER_FILE
    counter = NewLabelCounter(path, ["intrasense"])  # missing file: zero, no warning
    assert counter.counts() == {"intrasense": 0} and not caplog.records
    path.write_text(json.dumps({"new_labels": {"intrasense": 1, "dsanet": 3}}))
    counter = NewLabelCounter(path, ["intrasense"])
    assert counter["intrasense"] == 1 and counter.increment("intrasense") == 2
    counter.reset("intrasense")
    assert json.loads(path.read_text()) == {"new_labels": {"dsanet": 3, "intrasense": 0}}
    gone = NewLabelCounter(tmp_path / "no_such_folder" / COUNTER_FILE, ["intrasense"])
    with caplog.at_level(logging.WARNING, logger="monailabel_app.lib.label_counter"):
        assert gone.increment("intrasense") == 1  # cannot write: kept in memory, no exception
    assert any("in memory only" in r.getMessage() for r in caplog.records)
