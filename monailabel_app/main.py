"""usseg MONAI Label app: DSANet (cines) and IntraSense-Net (images) as infer/train tasks.

Start it with ``scripts/serve`` or::

    MONAI_LABEL_DATASTORE_FILE_EXT='["*.dcm", "*.png", "*.jpg", "*.nii.gz", "*.nii", "*.nrrd", "*.mp4", "*.mov"]' \\
    monailabel start_server --app monailabel_app --studies STUDIES --host 127.0.0.1 \\
        --conf models dsanet,intrasense --conf config small

Configuration options are listed in :mod:`monailabel_app.lib.configs.base`; ``models`` selects the task
configs (default: all); ``labels "1:LV,2:MYO,3:LA"`` the structures they segment (default: one, from the
palette; :mod:`monailabel_app.lib.label_config`). A configuration value the app cannot use stops the server at
start-up with one line naming it (exit status 2), not a traceback. Bad client input is answered with HTTP 4xx
(never 500, never a crashed server): files are validated in Python by :func:`usseg_models.io.load_image` before
any native decoder sees them.
After ``auto_retrain_after`` newly saved labels of one kind (cine or image) the matching model retrains by
itself; MONAI Label runs at most one training at a time and ``GET /train/`` shows its status. The count is
kept in the datastore's folder (:mod:`monailabel_app.lib.label_counter`), so it survives a server restart.
An untrained model answers 409 until its first training (started by itself at start-up when the datastore holds
enough labels: :mod:`monailabel_app.lib.bootstrap`) has published; ``<model>_refine`` re-segments a cine from a few
corrected frames (:mod:`monailabel_app.lib.infers.refine`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from typing import Any

from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.exception import MONAILabelException
from monailabel.tasks.activelearning.first import First

from monailabel_app.lib import bootstrap, compat
from monailabel_app.lib.compat.safe_random import SafeRandom
from monailabel_app.lib.compat.scoring_queue import CoalescedScoring
from monailabel_app.lib.configs import CONFIGS
from monailabel_app.lib.configs.base import conf_value
from monailabel_app.lib.datastore import SafeLocalDatastore, UltrasoundDicomWebDatastore
from monailabel_app.lib.http import bad_request, not_found, validate_id
from monailabel_app.lib.inputs import item_kind
from monailabel_app.lib.label_counter import COUNTER_FILE, NewLabelCounter
from monailabel_app.lib.trainers.base import clean_stale_work
from monailabel_app.lib.trainers.options import TrainOptionError

__all__ = ["USSegApp"]

logger = logging.getLogger(__name__)


def _refuse_to_start(app_dir: str, exc: Exception) -> None:
    """Under ``monailabel start_server`` (which names this app in ``MONAI_LABEL_APP_DIR``), log one line naming the
    bad configuration value and end the process with status 2: MONAI Label would otherwise print the app's
    traceback several times over and exit with "Application startup failed". Elsewhere (the app built in a test
    or a script) the caller gets the exception."""
    served = os.environ.get("MONAI_LABEL_APP_DIR")
    if not served or os.path.realpath(served) != os.path.realpath(app_dir):
        return
    logger.error("usseg app cannot start: %s", exc)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(2)


class USSegApp(CoalescedScoring, MONAILabelApp):
    """MONAI Label app serving the usseg models (see the module docstring)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        # every change to MONAI Label internals, after its version check, in one documented order (lib/compat)
        compat.install(conf, check_train=self.check_train_request)
        self.model_dir = os.path.join(app_dir, "model")
        names = [m.strip() for m in conf.get("models", ",".join(CONFIGS)).split(",") if m.strip()]
        unknown = [m for m in names if m not in CONFIGS]
        self.models: dict[str, Any] = {}
        try:
            if unknown or not names:
                raise ValueError(f"--conf models {conf.get('models')!r}: unknown {unknown}; "
                                 f"choose from {list(CONFIGS)}")
            for name in names:
                config = CONFIGS[name]()
                config.init(name, self.model_dir, conf, None)
                self.models[name] = config
        except ValueError as exc:
            _refuse_to_start(app_dir, exc)
            raise
        self._label_lock = threading.Lock()
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="usseg",
            description="Ultrasound segmentation: DSANet for cines, IntraSense-Net for images",
            version="0.1.0",
        )
        # per datastore and kept across restarts: next to the datastore index and the labels it counts
        self._new_labels = NewLabelCounter(os.path.join(self.datastore().state_dir(), COUNTER_FILE), self.models)
        self._give_datastore_label_values()

    def check_train_request(self, model: str, params: Any) -> None:
        """404 for an unknown model, 422 naming the bad option (see :mod:`monailabel_app.lib.trainers.options`)."""
        if model not in self.models:
            raise not_found(f"no trainer {model!r}; available: {sorted(self.models)}")
        if params is not None and not isinstance(params, dict):
            raise HTTPException(status_code=422, detail="training options must be a JSON object")
        try:
            self._trainers[model].options(dict(params or {}))
        except TrainOptionError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc

    def _bootstrap_conf(self, name: str) -> tuple[int, dict[str, Any]]:
        """``(minimum labelled studies, training options)`` of a model's first training at start-up."""
        minimum = int(conf_value(self.conf, name, "bootstrap_min_labels", bootstrap.DEFAULT_BOOTSTRAP_MIN_LABELS))
        options = {
            "max_epochs": int(conf_value(self.conf, name, "bootstrap_epochs",
                                         bootstrap.DEFAULT_BOOTSTRAP_EPOCHS[self.models[name].kind])),
            "lr": float(conf_value(self.conf, name, "bootstrap_lr", bootstrap.DEFAULT_BOOTSTRAP_LR)),
            "bootstrap": True,
        }
        return minimum, options

    def on_init_complete(self):
        """Start the first training of every untrained model whose kind has enough labels (bootstrap)."""
        super().on_init_complete()
        for config in self.models.values():
            clean_stale_work(config.store.model_dir)
        datastore = self.datastore()
        for name, config in self.models.items():
            minimum, options = self._bootstrap_conf(name)
            if config.store.weights_path() is not None or minimum <= 0:
                continue
            labelled = bootstrap.labelled_items(datastore, config.kind)
            if len(labelled) < minimum:
                logger.info("%s is untrained; %d labelled %ss, bootstrap needs %d", name, len(labelled),
                            config.kind, minimum)
                continue
            missing = [] if config.label_set.is_binary else bootstrap.missing_structures(
                datastore, config.kind, config.label_set)
            if missing:
                logger.info("%s is untrained: no labelled %s shows %s of %s yet; no first training by itself", name,
                            config.kind, ", ".join(missing), config.label_set.describe())
                continue
            started = self.async_training(name, params={name: options}, enqueue=True)
            logger.info("%s is untrained: first training on %d labelled %ss started (%s)", name, len(labelled),
                        config.kind, started)

    # ---- datastore -------------------------------------------------------------------------------------
    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            self.studies = self.studies.rstrip("/").strip()
            client = DICOMwebClientX(
                url=self.studies,
                qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
                wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
                stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
            )
            cache = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
            return UltrasoundDicomWebDatastore(
                client, settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER, cache_path=cache,
                fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
            )
        return SafeLocalDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    # ---- tasks -----------------------------------------------------------------------------------------
    def init_infers(self):
        infers = {}
        for config in self.models.values():
            infers.update(config.infer())
        return infers

    def init_trainers(self):
        return {name: config.trainer() for name, config in self.models.items()}

    def init_strategies(self):
        strategies = {"random": SafeRandom(), "first": First()}
        for config in self.models.values():
            strategies.update(config.strategy() or {})
        return strategies

    def init_scoring_methods(self):
        methods = {}
        for config in self.models.values():
            methods.update(config.scoring_method() or {})
        return methods

    def info(self):
        meta = super().info()
        meta["usseg"] = {
            name: {
                "network": c.network_name,
                "config": c.config_name,
                "device": c.device,
                "kind": c.kind,
                "labels": c.label_set.describe(),
                "label_names": dict(c.labels),
                "label_colors": {k: list(v) for k, v in c.label_colors.items()},
                "model_file": c.store.trained_path.name,
                "refused_checkpoint": c.store.refused,
                "auto_retrain_after": c.auto_retrain_after,
                "trained": c.store.weights_path() is not None,
                "weights": c.store.weights_path().name if c.store.weights_path() else None,
                "candidate": self._trainers[name].history.candidate() if name in self._trainers else None,
                "history": self._trainers[name].history.entries()[-5:] if name in self._trainers else [],
            }
            for name, c in self.models.items()
        }
        return meta

    def _refuse_untrained(self, model: str, request: dict[str, Any]) -> None:
        config = self.models.get(model)
        if config is None or config.store.weights_path() is not None or bootstrap.wants_untrained(request):
            return
        if str(conf_value(self.conf, model, "untrained_infer", "refuse")).lower() == "allow":
            return
        minimum, _ = self._bootstrap_conf(model)
        try:
            labelled = len(bootstrap.labelled_items(self.datastore(), config.kind))
        except Exception as exc:  # noqa: BLE001 - the message is best effort; the refusal is what matters
            logger.warning("cannot count labelled %ss: %s", config.kind, exc)
            labelled = 0
        raise HTTPException(status_code=409, detail=bootstrap.untrained_message(model, config.kind, labelled, minimum))

    # ---- requests --------------------------------------------------------------------------------------
    def infer(self, request, datastore=None):
        model = request.get("model")
        if model not in self._infers:
            raise not_found(f"no model {model!r}; available: {sorted(self._infers)}")
        self._refuse_untrained(model, request)
        image = request.get("image")
        if isinstance(image, str) and os.path.exists(image):
            # Only files uploaded with the request (saved by MONAI Label in the temp folder) may be named by
            # path; anything else must be a datastore id.
            if os.path.dirname(os.path.realpath(image)) != os.path.realpath(tempfile.gettempdir()):
                raise bad_request("image must be a datastore id or an uploaded file, not a server path")
        elif isinstance(image, str):
            validate_id(image, "image id")
            datastore = datastore or self.datastore()
            if not isinstance(datastore, UltrasoundDicomWebDatastore) and image not in datastore.list_images():
                raise not_found(f"image {image!r} is not in the datastore")
        try:
            return super().infer(request, datastore)
        except MONAILabelException as exc:
            raise bad_request(exc.msg) from exc

    def train(self, request):
        if request.get("model") not in self._trainers:
            raise not_found(f"no trainer {request.get('model')!r}; available: {sorted(self._trainers)}")
        return super().train(request)

    def next_sample(self, request):
        if request.get("strategy") and request["strategy"] not in self._strategies:
            raise not_found(f"no strategy {request['strategy']!r}; available: {sorted(self._strategies)}")
        return super().next_sample(request)

    def scoring(self, request, datastore=None):
        if request.get("method") not in self._scoring_methods:
            raise not_found(f"no scoring method {request.get('method')!r}; available: {sorted(self._scoring_methods)}")
        return super().scoring(request, datastore)

    # ---- retraining on submitted labels ----------------------------------------------------------------
    def _model_for_image(self, image_id: str) -> str | None:
        """The model whose kind (cine or image) matches the datastore image."""
        try:
            kind = item_kind(self.datastore().get_image_uri(image_id))
        except HTTPException as exc:
            logger.warning("cannot tell the kind of %s: %s", image_id, exc.detail)
            return None
        return next((name for name, c in self.models.items() if c.kind == kind), None)

    def on_save_label(self, image_id, label_id):
        """Count newly saved final labels per model; start training after ``auto_retrain_after`` of them.

        The count is stored in the datastore's folder (see :mod:`monailabel_app.lib.label_counter`), so labels
        saved before a restart still count; it goes back to zero when the auto-started training starts.
        """
        result = super().on_save_label(image_id, label_id) or {}
        model = self._model_for_image(image_id)
        if model is None:
            return result
        threshold = self.models[model].auto_retrain_after
        with self._label_lock:
            count = self._new_labels.increment(model)
            result["new_labels"] = {model: count, "auto_retrain_after": threshold}
            if threshold <= 0 or count < threshold:
                return result
            started = self.async_training(model, enqueue=False)
            if started:
                self._new_labels.reset(model)
                result["train"] = {"model": model, "task": started}
                logger.info("auto retrain of %s started after %d new labels", model, count)
            else:
                logger.info("auto retrain of %s postponed: a training run is already going", model)
        return result

    # ---- label values ----------------------------------------------------------------------------------
    def _give_datastore_label_values(self) -> None:
        """Give the datastore each kind's label values (labels are checked against the model of their image's kind,
        :mod:`monailabel_app.lib.label_checks`)."""
        datastore = self.datastore()
        if hasattr(datastore, "label_values"):
            values = {c.kind: c.label_set.allowed_values for c in self.models.values()}
            datastore.label_values = {**datastore.label_values, **values}
            datastore.label_structures = {
                c.kind: ", ".join(f"{v} {n}" for v, n in zip(c.label_set.values, c.label_set.names))
                for c in self.models.values()}
