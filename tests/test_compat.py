"""``monailabel_app.lib.compat``: the version check, and every workaround tied to its module, test and upstream text."""

from __future__ import annotations

import importlib
import logging
import re

import pytest
from server_utils import REPO_ROOT

from monailabel_app.lib import compat


def test_the_installed_monai_label_is_a_tested_one():
    assert compat.installed_version() in compat.TESTED_VERSIONS
    assert compat.check_version() == compat.installed_version()


def test_an_untested_monai_label_is_refused_with_a_message_unless_overridden(monkeypatch, caplog):
    monkeypatch.delenv(compat.ALLOW_ENV, raising=False)
    with pytest.raises(compat.UntestedMonaiLabel) as refused:
        compat.check_version({}, version="0.9.0")
    message = str(refused.value)
    assert "tested with monailabel 0.8.5" in message and "this is 0.9.0" in message
    assert "--conf allow_untested_monailabel true" in message and compat.ALLOW_ENV in message
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        assert compat.check_version({"allow_untested_monailabel": "true"}, version="0.9.0") == "0.9.0"
    assert "starting anyway" in caplog.text
    monkeypatch.setenv(compat.ALLOW_ENV, "1")
    assert compat.check_version({}, version="0.9.0") == "0.9.0"
    monkeypatch.setenv(compat.ALLOW_ENV, "0")
    with pytest.raises(compat.UntestedMonaiLabel):
        compat.check_version({"allow_untested_monailabel": "no"}, version="0.9.0")


def test_the_app_refuses_to_start_on_an_untested_monai_label(monkeypatch, tmp_path):
    """Before anything is built: the version check is the first thing the app does."""
    main = importlib.import_module("monailabel_app.main")
    monkeypatch.delenv(compat.ALLOW_ENV, raising=False)
    monkeypatch.setattr(compat, "installed_version", lambda: "0.9.0")
    with pytest.raises(compat.UntestedMonaiLabel):
        main.USSegApp(str(tmp_path / "app"), str(tmp_path / "studies"), {"models": "dsanet"})
    assert not (tmp_path / "app" / "model").exists()


@pytest.mark.parametrize("workaround", compat.WORKAROUNDS, ids=[w.name for w in compat.WORKAROUNDS])
def test_each_workaround_has_its_module_tests_and_upstream_text(workaround):
    importlib.import_module(workaround.module)
    for node in filter(None, (workaround.test, workaround.stock)):
        path, _, name = node.partition("::")
        source = (REPO_ROOT / path).read_text()
        assert re.search(rf"^def {re.escape(name)}\(", source, re.M), f"{node} does not exist"
    upstream = (REPO_ROOT / workaround.upstream).read_text()
    assert "0.8.5" in upstream and "## Minimal fix" in upstream and workaround.module.rsplit(".", 1)[1] in upstream
    index = (REPO_ROOT / "docs" / "upstream" / "README.md").read_text()
    assert workaround.upstream.rsplit("/", 1)[1] in index


def test_every_workaround_but_the_results_folder_has_a_test_of_the_stock_bug():
    """The results folder is where the app writes; no switch can put it back in the temp folder, so its test is the
    deterministic reproduction of the race (it failed 7 of 7 times with results in the temp folder)."""
    assert [w.name for w in compat.WORKAROUNDS if not w.stock] == ["result-files"]


def test_no_module_outside_compat_reaches_into_monai_label_endpoints():
    """MONAI Label's endpoint modules and route table are touched from compat/ only."""
    offenders = []
    for path in (REPO_ROOT / "monailabel_app").rglob("*.py"):
        if "compat" in path.parts:
            continue
        text = path.read_text()
        if re.search(r"monailabel\.endpoints|monailabel\.app\b|\.router\.routes", text):
            offenders.append(str(path.relative_to(REPO_ROOT)))
    assert not offenders, offenders


class _QueueRecorder:
    """MONAI Label's scoring queue, recorded: ``AsyncTask.run`` appends a SUBMITTED task as the real one does."""

    def __init__(self, monkeypatch):
        from monailabel.utils.async_tasks import task as task_module
        from monailabel.utils.async_tasks import utils as task_utils

        self.tasks: list[dict] = []
        monkeypatch.setitem(task_utils.background_tasks, "scoring", self.tasks)

        def run(method, request=None, params=None, force_sync=False, enqueue=False):
            assert method == "scoring" and enqueue
            self.tasks.append({"status": "SUBMITTED", "request": dict(request or {})})
            return self.tasks[-1], None

        monkeypatch.setattr(task_module.AsyncTask, "run", staticmethod(run))

    def queued(self, status: str = "SUBMITTED") -> list[str]:
        return [t["request"]["method"] for t in self.tasks if t["status"] == status]


def _scoring_app(*bases):
    """An app of ``bases`` in server mode with two scoring methods, built without MONAI Label's heavy ``__init__``."""

    class App(*bases):
        def __init__(self):
            self._server_mode = True
            self._scoring_methods = {"a": None, "b": None}

    return App()


def test_stock_automatic_scoring_queues_one_run_per_request(monkeypatch):
    from monailabel.interfaces.app import MONAILabelApp

    queue = _QueueRecorder(monkeypatch)
    app = _scoring_app(MONAILabelApp)
    for _ in range(5):  # five next-sample requests (or trainings) while nothing has started yet
        app.async_scoring(None)
    assert queue.queued() == ["a", "b"] * 5  # ten full scoring runs waiting, each computing the same scores


def test_automatic_scoring_is_queued_once_per_method_while_one_waits(monkeypatch):
    from monailabel.interfaces.app import MONAILabelApp

    from monailabel_app.lib.compat.scoring_queue import CoalescedScoring, waiting_scoring_methods

    queue = _QueueRecorder(monkeypatch)
    app = _scoring_app(CoalescedScoring, MONAILabelApp)
    for _ in range(5):
        app.async_scoring(None)
    assert queue.queued() == ["a", "b"] and waiting_scoring_methods() == {"a", "b"}
    queue.tasks[0]["status"] = "RUNNING"  # the worker started "a": the next request queues one more "a" only
    assert app.async_scoring(None) == {"a": queue.tasks[-1], "b": None}
    app.async_scoring("a")
    assert queue.queued() == ["b", "a"] and queue.queued("RUNNING") == ["a"]
    for task in queue.tasks:
        task["status"] = "DONE"
    app.async_scoring("b")  # nothing waiting: queued again
    assert queue.queued() == ["b"]
    app._server_mode = False  # a training subprocess asks the server over HTTP: MONAI Label's own path

    calls = []
    monkeypatch.setattr(MONAILabelApp, "_local_request", lambda self, url, p, action: calls.append(url) or {})
    app.async_scoring(None)
    assert calls == ["/scoring/a", "/scoring/b"]
