"""USSegClipLib client over real HTTP, without MONAI Label: multipart parsing of the exact encoding MONAI Label
uses (``requests_toolbelt.MultipartEncoder``), connection failures, error messages, retries and timeouts.

The HTTP server here is the standard library's ``ThreadingHTTPServer`` answering on loopback; it stands in only
for the error and retry paths. The complete flow against a real MONAI Label server is in
``test_slicer_server_flow.py``.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "USSegClip"))

from USSegClipLib import (  # noqa: E402
    PHASE_PROPAGATE,
    PHASE_REFINE,
    Clip,
    ClipGeometryError,
    ModelNotTrainedError,
    MonaiLabelClient,
    ServerError,
    ServerResponseError,
    ServerTimeoutError,
    ServerUnavailableError,
    USSegClipError,
    parse_multipart,
    read_volume,
    refine_clip,
    refine_clip_in_phases,
    refine_model_name,
    refine_modes,
    refine_status,
    write_nifti,
)

MultipartEncoder = pytest.importorskip("requests_toolbelt").MultipartEncoder


def _encoded(params: dict, payload: bytes, filename: str = "label.nii.gz"):
    fields = {
        "params": (None, json.dumps(params), "application/json"),
        "image": (filename, payload, "application/gzip"),
    }
    enc = MultipartEncoder(fields=fields)
    return enc.to_string(), enc.content_type


def test_multipart_parse_is_byte_exact():
    rng = np.random.default_rng(1)
    payload = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    payload = b"\r\n--" + payload + b"\r\n\r\n" + payload + b"--\r\n"  # delimiter-like bytes inside the payload
    body, ctype = _encoded({"label_names": {"lesion": 1}, "shape": [4, 5, 6]}, payload)
    parts = parse_multipart(body, ctype)
    assert list(parts) == ["params", "image"]
    assert json.loads(parts["params"].data) == {"label_names": {"lesion": 1}, "shape": [4, 5, 6]}
    assert parts["image"].filename == "label.nii.gz"
    assert parts["image"].content_type == "application/gzip"
    assert parts["image"].data == payload


def test_multipart_empty_payload_and_malformed_bodies():
    body, ctype = _encoded({}, b"")
    assert parse_multipart(body, ctype)["image"].data == b""
    full, ctype = _encoded({"a": 1}, b"x" * 100)
    with pytest.raises(ServerError, match="closing boundary"):
        parse_multipart(full[:-40], ctype)
    with pytest.raises(ServerError, match="multipart"):
        parse_multipart(full, "application/json")
    with pytest.raises(ServerError, match="boundary"):
        parse_multipart(full, "multipart/form-data")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_a_clear_error():
    client = MonaiLabelClient(f"http://127.0.0.1:{_free_port()}", timeout=2, retries=1, backoff=0.01)
    with pytest.raises(ServerUnavailableError, match="cannot reach the MONAI Label server at http://127.0.0.1"):
        client.info()
    with pytest.raises(ServerUnavailableError):
        client.next_sample("random")


def test_bad_urls_and_settings_are_refused():
    with pytest.raises(ValueError, match="http"):
        MonaiLabelClient("127.0.0.1:8000")
    with pytest.raises(ValueError, match="timeouts"):
        MonaiLabelClient("http://x", timeout=0)
    with pytest.raises(ValueError, match="retries"):
        MonaiLabelClient("http://x", retries=-1)
    with pytest.raises(ValueError, match="exactly one"):
        MonaiLabelClient("http://x").infer("dsanet")


class _Handler(BaseHTTPRequestHandler):
    counts: dict = {}
    infer_body: tuple = (b"", "")
    refine_requests: list = []
    refine_delay: float = 0.0
    refine_answers: dict = {}  # params "mode" → answer (default: infer_body)
    refine_delays: dict = {}  # params "mode" → seconds (default: refine_delay)
    refine_modes: list = []  # GET /info/ models["dsanet_refine"]["refine"]["modes"]

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status, body: bytes, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _count(self):
        key = (self.command, self.path.split("?")[0])
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]

    def do_GET(self):
        n = self._count()
        path = self.path.split("?")[0]
        if path == "/info/":
            models = {"dsanet": {}, "dsanet_refine": {"refine": {"max_steps": 60, "modes": self.refine_modes}}}
            self._send(200, json.dumps({"name": "t", "auth": self.headers.get("Authorization"),
                                        "models": models}).encode())
        elif path == "/flaky/":
            self._send(503, b"busy", "text/plain") if n < 3 else self._send(200, b'{"ok": true}')
        elif path == "/slow/":
            time.sleep(1.5)
            self._send(200, b"{}")
        elif path == "/train/":
            self._send(404, json.dumps({"detail": "No Train Tasks Found"}).encode())
        elif path == "/text/":
            self._send(500, b"Internal Server Error\ntraceback", "text/plain")
        else:
            self._send(404, json.dumps({"detail": "Not Found"}).encode())

    def do_POST(self):
        self._count()
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        path = self.path.split("?")[0]
        if path == "/infer/untrained":
            detail = ("model untrained is not trained yet, so its output would be meaningless: its first training is "
                      "running (started 1796000000); GET /train/ shows its progress — try again when it is DONE. "
                      'Send params {"allow_untrained": true} to get untrained output anyway.')
            self._send(409, json.dumps({"detail": detail}).encode())
        elif path == "/infer/dsanet_refine":
            parts = parse_multipart(body, self.headers["Content-Type"])
            _Handler.refine_requests.append((self.path, {k: (v.filename, v.data) for k, v in parts.items()}))
            mode = json.loads(parts["params"].data).get("mode")
            time.sleep(self.refine_delays.get(mode, self.refine_delay))
            answer, ctype = self.refine_answers.get(mode, self.infer_body)
            self._send(200, answer, ctype)
        elif path.startswith("/activelearning/"):
            self._send(503, b"busy", "text/plain")
        elif path.startswith("/infer/bad"):
            detail = [{"loc": ["query", "image"], "msg": "field required"}]
            self._send(422, json.dumps({"detail": detail}).encode())
        elif path.startswith("/infer/"):
            body, ctype = self.infer_body
            self._send(200, body, ctype)
        else:
            self._send(404, b'{"detail": "Not Found"}')


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client that timed out closed its socket: expected
        pass


@pytest.fixture
def http_server():
    _Handler.counts, _Handler.refine_answers, _Handler.refine_delays, _Handler.refine_delay = {}, {}, {}, 0.0
    _Handler.refine_modes = ["hybrid", "propagate", "adapt"]
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_errors_carry_the_server_message(http_server):
    client = MonaiLabelClient(http_server, token="s3cret", retries=0)
    assert client.info()["auth"] == "Bearer s3cret"
    with pytest.raises(ServerResponseError, match=r"HTTP 404 \(GET /model/info/x\): Not Found") as err:
        client._request("GET", "/model/info/x")
    assert err.value.is_client_error and err.value.status == 404
    with pytest.raises(ServerResponseError, match="query.image: field required") as err:
        client.infer("bad", image_id="x")
    assert err.value.status == 422
    with pytest.raises(ServerResponseError, match="HTTP 500.*Internal Server Error traceback"):
        client._request("GET", "/text/")
    assert client.training_status() is None  # 404 "No Train Tasks Found" means: nothing yet


def test_get_is_retried_post_is_not(http_server):
    client = MonaiLabelClient(http_server, retries=3, backoff=0.01)
    assert client._json(client._request("GET", "/flaky/")) == {"ok": True}
    assert _Handler.counts[("GET", "/flaky/")] == 3
    with pytest.raises(ServerResponseError, match="HTTP 503"):
        client.next_sample("random")
    assert _Handler.counts[("POST", "/activelearning/random")] == 1


def test_timeout_is_a_clear_error(http_server):
    client = MonaiLabelClient(http_server, timeout=0.3, retries=0)
    with pytest.raises(ServerTimeoutError, match="did not answer GET /slow/ within 0.3 s"):
        client._request("GET", "/slow/")


def test_infer_multipart_answer_over_http(http_server, tmp_path):
    payload = np.random.default_rng(2).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    _Handler.infer_body = _encoded({"label_names": {"lesion": 1}}, payload, "usseg_x.nii.gz")
    image = tmp_path / "clip.nii.gz"
    image.write_bytes(b"not read by this server")
    result = MonaiLabelClient(http_server).infer("dsanet", file=image)
    assert result.params == {"label_names": {"lesion": 1}}
    assert result.label == payload
    saved = Path(result.save_label(tmp_path))
    assert saved.name == "usseg_x.nii.gz" and saved.read_bytes() == payload


def test_untrained_model_answer_becomes_a_plain_sentence(http_server):
    """409 "not trained yet" (the usseg server's wording) → ModelNotTrainedError, a sentence without API jargon."""
    with pytest.raises(ModelNotTrainedError) as err:
        MonaiLabelClient(http_server, retries=0).infer("untrained", image_id="cine_000")
    message = str(err.value)
    assert err.value.status == 409 and err.value.model == "untrained" and "allow_untrained" in err.value.detail
    assert message.startswith("The untrained model on the server is not trained yet")
    assert "its first training is running" in message and "Refine from my edits" in message
    assert "allow_untrained" not in message and "HTTP" not in message


def _refine_answer(tmp_path, shape=(8, 6, 5), value=1, label=None, refinement=None):
    if label is None:
        label = np.zeros(shape, np.uint8)
        label[2:5, 1:4, :] = value
    path = write_nifti(Clip(label, np.diag([0.5, 0.5, 1.0, 1.0]), 2), tmp_path / "refined.nii.gz")
    refinement = refinement or {"corrected_frames": [0, 4], "steps": 3}
    return label, _encoded({"refinement": refinement}, Path(path).read_bytes())


def test_refine_request_and_answer(http_server, tmp_path):
    """The clip (upload) or its id, the label as multipart ``label`` and corrected_frames in params; the refined
    label comes back on the label's grid; progress is reported while waiting."""
    refined, _Handler.infer_body = _refine_answer(tmp_path)
    _Handler.refine_requests, _Handler.refine_delay = [], 0.3
    client = MonaiLabelClient(http_server, retries=0)
    matrix = np.diag([0.5, 0.5, 1.0, 1.0])
    label = Clip(np.zeros((8, 6, 5), np.uint8), matrix, 2)
    label.voxels[0:2, 0:2, 4] = 1
    clip = Clip(np.arange(240, dtype=np.uint8).reshape(8, 6, 5), matrix, 2)
    calls, answer = [], {}
    out = refine_clip(client, "dsanet_refine", label, [4, 0, 4], clip=clip, params={"max_steps": 3},
                      progress=lambda s, b: calls.append((s, b)), poll_interval=0.05, answer=answer)
    np.testing.assert_array_equal(out.voxels, refined)
    np.testing.assert_array_equal(out.ijk_to_ras, matrix)
    assert answer["refinement"]["steps"] == 3 and len(calls) >= 3 and all(b is None for _, b in calls)
    query, parts = _Handler.refine_requests[-1]
    assert "output=all" in query and "image=" not in query
    assert json.loads(parts["params"][1]) == {"max_steps": 3, "corrected_frames": [0, 4]}
    (tmp_path / "sent").mkdir()
    sent = tmp_path / "sent" / parts["label"][0]
    sent.write_bytes(parts["label"][1])
    np.testing.assert_array_equal(read_volume(sent).voxels, label.voxels)
    assert parts["file"][0].endswith(".nii.gz")
    refine_clip(client, "dsanet_refine", label, [0], image_id="cine_000", poll_interval=0.05)
    query, parts = _Handler.refine_requests[-1]
    assert "image=cine_000" in query and "file" not in parts


def test_refine_cancel_stops_waiting(http_server, tmp_path):
    _, _Handler.infer_body = _refine_answer(tmp_path)
    _Handler.refine_requests, _Handler.refine_delay = [], 3.0
    client = MonaiLabelClient(http_server, retries=0)
    label = Clip(np.ones((8, 6, 5), np.uint8), np.eye(4), 2)
    cancel = threading.Event()
    t0 = time.monotonic()
    out = refine_clip(client, "dsanet_refine", label, [1], image_id="x", params={"time_budget_s": 8.0},
                      progress=lambda s, b: cancel.set() if s > 0.2 else None, cancel=cancel, poll_interval=0.05)
    assert out is None and time.monotonic() - t0 < 2.0  # returned long before the server's 3 s answer
    assert client.info()["name"] == "t"  # the caller's client is still usable (the request ran on a clone)


def test_refine_input_errors(tmp_path):
    client = MonaiLabelClient("http://127.0.0.1:9")
    label = Clip(np.zeros((8, 6, 5), np.uint8), np.eye(4), 2)
    with pytest.raises(ValueError, match="at least one corrected frame"):
        refine_clip(client, "dsanet_refine", label, [], image_id="x")
    with pytest.raises(ClipGeometryError, match=r"\[5\] lie outside the clip's 5 frames"):
        refine_clip(client, "dsanet_refine", label, [0, 5], image_id="x")
    with pytest.raises(ClipGeometryError, match="binary"):
        refine_clip(client, "dsanet_refine", Clip(np.full((8, 6, 5), 2, np.uint8), np.eye(4), 2), [0], image_id="x")
    with pytest.raises(ValueError, match="exactly one"):
        refine_clip(client, "dsanet_refine", label, [0])
    assert refine_model_name({"models": {"dsanet": {}, "dsanet_refine": {}}}, "dsanet") == "dsanet_refine"
    with pytest.raises(USSegClipError, match="no refinement"):
        refine_model_name({"models": {"dsanet": {}}}, "dsanet")


# ------------------------------------------------------------------ two-phase refinement (propagated, then refined)
def _phase_answers(tmp_path, modes=("propagate", "hybrid")):
    """Per mode a different refined label that also changes the corrected frames 0 and 4 (a server must not: the
    client keeps them as drawn anyway)."""
    labels = {}
    for k, mode in enumerate(modes):
        label = np.zeros((8, 6, 5), np.uint8)
        label[k : k + 3, 1:4, :] = 1
        out = tmp_path / mode
        out.mkdir()
        labels[mode], _Handler.refine_answers[mode] = _refine_answer(out, label=label, refinement={"mode": mode})
    return labels


def _sent_modes():
    return [json.loads(parts["params"][1]).get("mode") for _, parts in _Handler.refine_requests]


def _drawn_label():
    label = Clip(np.zeros((8, 6, 5), np.uint8), np.diag([0.5, 0.5, 1.0, 1.0]), 2)
    label.voxels[0:2, 0:2, 4] = 1
    return label


def test_refine_in_phases_shows_the_propagated_label_first(http_server, tmp_path):
    """propagate, then hybrid: the callback gets the propagated label while the hybrid request runs, the hybrid one
    is returned; both with the corrected frames as drawn; progress names the phase; the inputs are sent twice."""
    answers = _phase_answers(tmp_path)
    _Handler.refine_requests, _Handler.refine_delays = [], {"propagate": 0.2, "hybrid": 0.5}
    client = MonaiLabelClient(http_server, retries=0)
    label, frames = _drawn_label(), [0, 4]
    clip = Clip(np.arange(240, dtype=np.uint8).reshape(8, 6, 5), label.ijk_to_ras, 2)
    shown, calls, answer = [], [], {}

    def on_propagated(propagated):  # the refined request goes out while the caller shows the propagated label
        deadline = time.monotonic() + 2.0
        while len(_Handler.refine_requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        shown.append((propagated, _sent_modes()))

    out = refine_clip_in_phases(client, "dsanet_refine", label, frames, clip=clip, params={"time_budget_s": 1.5},
                                on_propagated=on_propagated, progress=lambda s, b, p: calls.append((p, b)),
                                poll_interval=0.05, answer=answer)  # info: asked from the server
    assert _sent_modes() == ["propagate", "hybrid"]
    assert len(shown) == 1
    propagated, sent_by_then = shown[0]
    assert sent_by_then == ["propagate", "hybrid"]
    others = [1, 2, 3]
    for got, expected in ((propagated, answers["propagate"]), (out, answers["hybrid"])):
        np.testing.assert_array_equal(got.voxels[:, :, others], expected[:, :, others])
        np.testing.assert_array_equal(got.voxels[:, :, frames], label.voxels[:, :, frames])  # as drawn
        np.testing.assert_array_equal(got.ijk_to_ras, label.ijk_to_ras)
    assert not np.array_equal(answers["propagate"][:, :, frames], label.voxels[:, :, frames])  # the test can fail
    phases = [p for p, _ in calls]
    assert phases == sorted(phases, key=[PHASE_PROPAGATE, PHASE_REFINE].index) and set(phases) == {
        PHASE_PROPAGATE, PHASE_REFINE}
    assert {b for p, b in calls if p == PHASE_PROPAGATE} == {None} and {b for p, b in calls if p == PHASE_REFINE} == {
        1.5}
    assert answer["refinement"] == {"mode": "hybrid"} and answer["propagated"]["refinement"] == {"mode": "propagate"}
    first, second = (parts for _, parts in _Handler.refine_requests)
    assert json.loads(first["params"][1]) == {"time_budget_s": 1.5, "mode": "propagate", "corrected_frames": frames}
    assert json.loads(second["params"][1]) == {"time_budget_s": 1.5, "mode": "hybrid", "corrected_frames": frames}
    assert first["label"] == second["label"] and first["file"] == second["file"]


def test_refine_in_phases_without_propagate_mode_sends_one_request(http_server, tmp_path):
    """An older server (no modes, or none called propagate): only the refinement request, as refine_clip sends it."""
    refined, _Handler.infer_body = _refine_answer(tmp_path)
    client = MonaiLabelClient(http_server, retries=0)
    label = _drawn_label()
    for modes, sent in (([], [None]), (["hybrid", "adapt"], ["hybrid"])):
        _Handler.refine_requests, _Handler.refine_modes = [], modes
        shown, calls = [], []
        out = refine_clip_in_phases(client, "dsanet_refine", label, [4], image_id="cine_000",
                                    on_propagated=shown.append, progress=lambda s, b, p, seen=calls: seen.append(p),
                                    poll_interval=0.05)
        assert _sent_modes() == sent and not shown and set(calls) == {PHASE_REFINE}
        np.testing.assert_array_equal(out.voxels[:, :, :4], refined[:, :, :4])
    _Handler.refine_requests = []  # given info instead of asking the server
    refine_clip_in_phases(client, "dsanet_refine", label, [4], image_id="x", info={"models": {"dsanet_refine": {}}})
    assert _sent_modes() == [None]
    _Handler.refine_requests = []  # a caller's mode is the second request's
    _phase_answers(tmp_path, ("propagate", "adapt"))
    refine_clip_in_phases(client, "dsanet_refine", label, [4], image_id="x", params={"mode": "adapt"},
                          info={"models": {"dsanet_refine": {"refine": {"modes": ["hybrid", "propagate", "adapt"]}}}})
    assert _sent_modes() == ["propagate", "adapt"]


def test_refine_in_phases_cancel(http_server, tmp_path):
    """Cancel in the refinement phase: the propagated label was handed over, None comes back at once. Cancel in the
    propagation phase: no callback, and the refinement request is never sent."""
    _phase_answers(tmp_path)
    _Handler.refine_requests, _Handler.refine_delays = [], {"propagate": 0.1, "hybrid": 3.0}
    client = MonaiLabelClient(http_server, retries=0)
    cancel, shown = threading.Event(), []
    t0 = time.monotonic()
    out = refine_clip_in_phases(client, "dsanet_refine", _drawn_label(), [0], image_id="x",
                                on_propagated=shown.append, cancel=cancel, poll_interval=0.05,
                                progress=lambda s, b, p: cancel.set() if p == PHASE_REFINE and s > 0.2 else None)
    assert out is None and len(shown) == 1 and time.monotonic() - t0 < 2.0  # long before the 3 s hybrid answer
    assert _sent_modes() == ["propagate", "hybrid"]

    _Handler.refine_requests, _Handler.refine_delays = [], {"propagate": 0.6, "hybrid": 0.0}
    cancel, shown = threading.Event(), []
    out = refine_clip_in_phases(client, "dsanet_refine", _drawn_label(), [0], image_id="x",
                                on_propagated=shown.append, cancel=cancel, poll_interval=0.05,
                                progress=lambda s, b, p: cancel.set() if s > 0.2 else None)
    assert out is None and not shown
    time.sleep(1.0)  # the propagation answer came in meanwhile; the worker stopped there
    assert _sent_modes() == ["propagate"]
    assert client.info()["name"] == "t"


def test_refine_modes_and_status_texts():
    info = {"models": {"dsanet_refine": {"refine": {"modes": ["hybrid", "propagate", "adapt"]}}, "old_refine": {}}}
    assert refine_modes(info, "dsanet_refine") == ["hybrid", "propagate", "adapt"]
    assert refine_modes(info, "old_refine") == [] and refine_modes({}, "dsanet_refine") == []
    assert refine_status(PHASE_PROPAGATE, 0.4) == "propagating… 0 s"
    assert refine_status(PHASE_REFINE, 3.2, propagated=True) == "propagated — refining… 3 s"
    assert refine_status(PHASE_REFINE, 3.2) == "refining… 3 s"
