"""``scripts/serve`` refusing a public host without authentication, and accepting loopback, auth or an opt-out.

It is refused before any set-up (no venv, no server); ``--check-host`` stops after the check. No server needed,
but marked like the other ``test_app_auth_*.py`` modules.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
from server_utils import REPO_ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]


# ---- scripts/serve --------------------------------------------------------------------------------------------
def _serve(args, env_extra=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if k not in ("MONAI_LABEL_AUTH_ENABLE", "USSEG_INSECURE_PUBLIC",
                                                             "USSEG_HOST")}
    env.update(env_extra or {})
    proc = subprocess.Popen([str(REPO_ROOT / "scripts" / "serve"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"scripts/serve {args} did not exit: it went on to set up or start a server")
    return proc.returncode, out + err


@pytest.mark.parametrize(
    "args,env",
    [
        (["--host", "0.0.0.0"], {}),
        (["--host=10.1.2.3", "--port", "8123"], {}),
        (["-i", "192.168.1.20"], {}),
        ([], {"USSEG_HOST": "0.0.0.0"}),
        (["--host", "0.0.0.0"], {"MONAI_LABEL_AUTH_ENABLE": "false"}),
    ],
)
def test_serve_refuses_a_public_host_without_auth(args, env):
    start = time.monotonic()
    code, output = _serve(args, env)
    assert code == 2, output
    assert "refusing to serve on host" in output and "MONAI_LABEL_AUTH_ENABLE=true" in output
    assert "--insecure-public" in output
    assert time.monotonic() - start < 30  # refused before any set-up


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    "args,env",
    [
        (["--host", "127.0.0.1"], {}),
        (["--host", "localhost"], {}),
        (["--host", "::1"], {}),
        (["--host", "0.0.0.0"], {"MONAI_LABEL_AUTH_ENABLE": "true"}),
        (["--host", "0.0.0.0", "--insecure-public"], {}),
        (["--host", "0.0.0.0"], {"USSEG_INSECURE_PUBLIC": "1"}),
    ],
)
def test_serve_accepts_loopback_auth_or_an_explicit_opt_out(args, env):
    code, output = _serve([*args, "--check-host"], env)
    assert code == 0 and "host check passed" in output, output
