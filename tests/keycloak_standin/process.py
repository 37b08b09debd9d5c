"""The token issuer run as a child process for tests: :class:`TokenIssuer` starts, asks and stops it.

``TokenIssuer.start`` runs ``python -m keycloak_standin.issuer`` on a free loopback port with the given users,
waits for its ``REALM_URI=`` line and stops it (process group, SIGTERM then SIGKILL) when the ``with`` block ends::

    with TokenIssuer.start(users={"ann": {"password": "pw", "roles": ["monailabel-user"]}}) as issuer:
        token = issuer.token("ann", "pw")
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keycloak_standin.realm import DEFAULT_CLIENT_ID, DEFAULT_USERS
from usseg_models.serving.launcher import stop_process_group

__all__ = ["TokenIssuer"]


class TokenIssuer:
    """The issuer in a child process (``python -m keycloak_standin.issuer``), for tests.

    Use :meth:`start` as a context manager; ``realm_uri`` is what ``MONAI_LABEL_AUTH_REALM_URI`` should be.
    """

    def __init__(self, proc: subprocess.Popen, realm_uri: str, users: Mapping[str, Mapping[str, Any]]):
        self.proc = proc
        self.realm_uri = realm_uri
        self.users = users
        self.token_endpoint = f"{realm_uri}/protocol/openid-connect/token"

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        workdir: str | os.PathLike | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        timeout: float = 30.0,
    ):
        import tempfile

        users = dict(users if users is not None else DEFAULT_USERS)
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            users_file = Path(tmp) / "users.json"
            users_file.write_text(json.dumps(users))
            cmd = [sys.executable, "-m", "keycloak_standin.issuer", "--port", "0", "--users", str(users_file),
                   "--client-id", client_id]
            env = dict(os.environ)
            env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
            log = open(Path(tmp) / "issuer.log", "wb")  # noqa: SIM115 - closed below
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
            try:
                realm_uri = cls._read_uri(proc, timeout, Path(tmp) / "issuer.log")
                yield cls(proc, realm_uri, users)
            finally:
                stop_process_group(proc, grace=10)
                proc.stdout.close()
                log.close()

    @staticmethod
    def _read_uri(proc: subprocess.Popen, timeout: float, log: Path) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(proc.stdout.readline().decode()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = result[0].strip() if result else ""
        if not line.startswith("REALM_URI="):
            raise RuntimeError(f"token issuer did not start (exit {proc.poll()}): {line!r}\n{log.read_text()[-2000:]}")
        return line.split("=", 1)[1]

    def token(self, username: str, password: str | None = None) -> str:
        """An access token for ``username`` from the token endpoint (password from the user table by default)."""
        import requests

        password = password if password is not None else self.users[username]["password"]
        r = requests.post(
            self.token_endpoint,
            data={"grant_type": "password", "client_id": DEFAULT_CLIENT_ID, "username": username, "password": password},
            timeout=10,
        )
        r.raise_for_status()
        return r.json()["access_token"]

    def counts(self) -> dict[str, int]:
        """How many password and refresh grants were given, and how many requests were refused."""
        import requests

        return requests.get(self.realm_uri.split("/realms/")[0] + "/usseg/counts", timeout=10).json()

