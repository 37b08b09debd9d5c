"""Everything this app changes inside MONAI Label, in one version-checked place.

MONAI Label 0.8.5 (November 2024) is its last release. The app needs it to behave in ways 0.8.5 does not; each
difference is a *workaround* of MONAI Label internals (route tables, endpoint functions, datastore objects), listed
in :data:`WORKAROUNDS` with the module that holds it, the test that shows the bug on stock MONAI Label (and its fix
here), and the upstream write-up in ``docs/upstream/`` (what is broken, the minimal fix) that a MONAI Label
maintainer could take.

:func:`install` is the only entry point the app calls (first thing in ``USSegApp.__init__``, before the app is built
and long before it serves). It

1. checks the installed MONAI Label against :data:`TESTED_VERSIONS` and refuses to start on another one, with a
   message saying so (:class:`UntestedMonaiLabel`; start anyway with ``--conf allow_untested_monailabel true`` or
   ``USSEG_ALLOW_UNTESTED_MONAILABEL=1``: the workarounds then run on internals they were not written for);
2. installs authentication (:mod:`.auth`; replaces routes, so it comes first);
3. wraps MONAI Label's endpoint functions with request guards (:mod:`.request_guards`) — **before** step 4, because
   the threaded routes capture the endpoint functions they are given;
4. puts the infer and train routes on worker threads (:mod:`.routes`), the train route behind the app's option
   check.

The other workarounds are used rather than installed: the datastore classes mix in :mod:`.datastore_lock`, the
app's ``random`` strategy is :class:`.safe_random.SafeRandom`, infer tasks write results through
:mod:`.result_files`, and the app class mixes in :class:`.scoring_queue.CoalescedScoring` (automatic scoring queued
once per method, not once per request). Outside the server process (a training or scoring subprocess) steps 2–4
install nothing.

``USSEG_COMPAT_DISABLE`` (a comma-separated list of ``auth``, ``request-guards``, ``threaded-routes``, or ``all``)
starts the server with those left out, on stock MONAI Label behaviour: for maintainers checking whether a release
still needs them (``tests/test_compat_stock.py`` does exactly that), never for users.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["TESTED_VERSIONS", "WORKAROUNDS", "Workaround", "UntestedMonaiLabel", "installed_version",
           "check_version", "disabled", "install"]

logger = logging.getLogger(__name__)

#: MONAI Label releases every workaround here was written for and tested with.
TESTED_VERSIONS = ("0.8.5",)
ALLOW_ENV = "USSEG_ALLOW_UNTESTED_MONAILABEL"
ALLOW_CONF = "allow_untested_monailabel"
DISABLE_ENV = "USSEG_COMPAT_DISABLE"
INSTALLED = ("auth", "request-guards", "threaded-routes")


@dataclass(frozen=True)
class Workaround:
    """One change to MONAI Label internals: where it lives, the test showing the bug, its upstream write-up."""

    name: str
    module: str
    test: str  # pytest node id of the fixed behaviour
    upstream: str
    summary: str
    stock: str = ""  # pytest node id asserting the bug on stock MONAI Label ("" when no switch can show it)


_HERE = "monailabel_app.lib.compat"
WORKAROUNDS = (
    Workaround(
        "threaded-routes", f"{_HERE}.routes",
        "tests/test_app_refine.py::test_too_many_refinements_at_once_get_429",
        "docs/upstream/01-blocking-async-routes.md",
        "POST /infer and /train do synchronous work inside async def: one inference blocks every request",
        "tests/test_compat_stock.py::test_stock_infer_route_blocks_every_other_request"),
    Workaround(
        "request-guards", f"{_HERE}.request_guards",
        "tests/test_app_hardening.py::test_delete_label_that_is_not_stored_is_404",
        "docs/upstream/02-request-validation.md",
        "malformed params, unknown scoring methods, bad uploads, DELETE of what is not there: 500 or 200",
        "tests/test_compat_stock.py::test_stock_request_handling_answers_wrong_requests_with_200_or_500"),
    Workaround(
        "auth", f"{_HERE}.auth",
        "tests/test_app_auth_login.py::test_accepted_algorithms_are_public_key_ones",
        "docs/upstream/03-auth-pyjwt-and-route-roles.md",
        "jwt.decode without algorithms refuses every token under PyJWT 2; /reload open; model routes to users",
        "tests/test_compat_stock.py::test_stock_token_check_refuses_every_token_under_pyjwt_2"),
    Workaround(
        "datastore-lock", f"{_HERE}.datastore_lock",
        "tests/test_app_datastore_lock.py::test_unlocked_local_datastore_shows_the_race",
        "docs/upstream/04-datastore-watcher-race.md",
        "the file watcher iterates the index while requests change it, and dies silently",
        "tests/test_app_datastore_lock.py::test_unlocked_local_datastore_shows_the_race"),
    Workaround(
        "safe-random", f"{_HERE}.safe_random",
        "tests/test_app_unit.py::test_random_strategy_survives_an_image_proposed_this_second",
        "docs/upstream/05-random-strategy-zero-weights.md",
        "Random strategy: all weights 0 within one second -> ValueError -> HTTP 500",
        "tests/test_app_unit.py::test_random_strategy_survives_an_image_proposed_this_second"),
    Workaround(
        "result-files", f"{_HERE}.result_files",
        "tests/test_app_server_results.py::test_answer_saved_by_monai_label_client_survives_the_servers_clean_up",
        "docs/upstream/06-result-file-temp-race.md",
        "client and server share the temp folder and result names: the server deletes the client's answer"),
    Workaround(
        "scoring-queue", f"{_HERE}.scoring_queue",
        "tests/test_compat.py::test_automatic_scoring_is_queued_once_per_method_while_one_waits",
        "docs/upstream/07-scoring-queue-grows-per-request.md",
        "every next-sample request and training queues another full scoring run: they pile up and run for minutes",
        "tests/test_compat.py::test_stock_automatic_scoring_queues_one_run_per_request"),
)


class UntestedMonaiLabel(RuntimeError):
    """The installed MONAI Label is not one the workarounds were tested with."""


def installed_version() -> str:
    """The installed ``monailabel`` distribution's version (``"unknown"`` when it has no metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("monailabel")
    except PackageNotFoundError:
        return "unknown"


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def check_version(conf: dict[str, Any] | None = None, version: str | None = None) -> str:
    """Return the installed MONAI Label version, or raise :class:`UntestedMonaiLabel` for an untested one.

    ``conf[allow_untested_monailabel]`` or the environment variable ``USSEG_ALLOW_UNTESTED_MONAILABEL`` set to a true
    value turns the refusal into a warning.
    """
    found = version or installed_version()
    if found in TESTED_VERSIONS:
        return found
    message = (f"usseg's MONAI Label app was tested with monailabel {', '.join(TESTED_VERSIONS)}; this is {found}. "
               f"Its workarounds replace MONAI Label internals ({len(WORKAROUNDS)} of them, "
               "monailabel_app/lib/compat/) that may differ here: install monailabel==0.8.5 (constraints.txt), or "
               f"start anyway with --conf {ALLOW_CONF} true (or {ALLOW_ENV}=1)")
    if _truthy((conf or {}).get(ALLOW_CONF)) or _truthy(os.environ.get(ALLOW_ENV, "")):
        logger.warning("%s — starting anyway, as asked", message)
        return found
    raise UntestedMonaiLabel(message)


def disabled() -> set[str]:
    """The installed workarounds ``USSEG_COMPAT_DISABLE`` leaves out (``all``: every one).

    Raises:
        ValueError: a name that is not one of :data:`INSTALLED`.
    """
    names = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    if "all" in names:
        return set(INSTALLED)
    unknown = sorted(names - set(INSTALLED))
    if unknown:
        raise ValueError(f"{DISABLE_ENV}: unknown workaround(s) {unknown}; choose from {list(INSTALLED)} or all")
    return names


def install(conf: dict[str, Any] | None = None, check_train: Callable[[str, Any], None] | None = None) -> list[str]:
    """Check the version, then install the workarounds in the order of the module docstring.

    Call it first thing in the app's ``__init__``: nothing else is built on an untested MONAI Label.

    Args:
        conf: the app's ``--conf`` options (may hold the override option).
        check_train: ``(model, params)`` check run when ``POST /train/{model}`` arrives (raises an HTTP error);
            called at request time only.

    Returns:
        What was installed, in order (empty outside the server process).
    """
    check_version(conf)
    server = sys.modules.get("monailabel.app")
    if server is None:  # a training or scoring subprocess serves no HTTP
        return []
    from monailabel.endpoints import infer as infer_endpoint
    from monailabel.endpoints import train as train_endpoint

    from monailabel_app.lib.compat.auth import install_auth
    from monailabel_app.lib.compat.request_guards import install_request_guards
    from monailabel_app.lib.compat.routes import run_in_threads

    off = disabled()
    if off:
        logger.warning("%s: MONAI Label workarounds left out (stock behaviour): %s", DISABLE_ENV,
                       ", ".join(sorted(off)))
    done = []
    if "auth" not in off:
        install_auth()
        done.append("auth")
    if "request-guards" not in off:
        done += [f"guard:{name}" for name in install_request_guards()]
    if "threaded-routes" not in off:

        def checked_training(model, params=None, run_sync=False, enqueue=False):
            if check_train is not None:
                check_train(model, params)
            return train_endpoint.run_model(model, params, run_sync, enqueue)

        # infer_endpoint.run_inference is read now: the guarded function installed just above
        run_in_threads(server.app, {("POST", "/infer/{model}"): infer_endpoint.run_inference,
                                    ("POST", "/train/{model}"): checked_training})
        done.append("threaded-routes")
    logger.info("MONAI Label %s: workarounds installed: %s", installed_version(), ", ".join(done) or "none")
    return done
