"""usseg MONAI Label app: DSANet (cines) and IntraSense-Net (images) as infer/train tasks.

Start it with ``scripts/serve`` or::

    MONAI_LABEL_DATASTORE_FILE_EXT='["*.dcm", "*.png", "*.jpg", "*.nii.gz", "*.nii", "*.nrrd"]' \\
    monailabel start_server --app monailabel_app --studies STUDIES --host 127.0.0.1 \\
        --conf models dsanet,intrasense --conf config small

Configuration options are listed in :mod:`monailabel_app.lib.configs.base`; ``models`` selects the task
configs (default: all). Bad client input is answered with HTTP 4xx (never 500, never a crashed server):
files are validated in Python by :func:`usseg_models.io.load_image` before any native decoder sees them.
After ``auto_retrain_after`` newly saved labels of one kind (cine or image) the matching model retrains by
itself; MONAI Label runs at most one training at a time and ``GET /train/`` shows its status. The count is
kept in the datastore's folder (:mod:`monailabel_app.lib.label_counter`), so it survives a server restart.
"""

from __future__ import annotations

import logging
import os
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
from monailabel.tasks.activelearning.random import Random

from monailabel_app.lib.auth import install_auth
from monailabel_app.lib.configs import CONFIGS
from monailabel_app.lib.datastore import SafeLocalDatastore, UltrasoundDicomWebDatastore
from monailabel_app.lib.http import bad_request, not_found, validate_id
from monailabel_app.lib.label_counter import COUNTER_FILE, NewLabelCounter
from monailabel_app.lib.trainers.base import item_kind

__all__ = ["USSegApp"]

logger = logging.getLogger(__name__)


class USSegApp(MONAILabelApp):
    """MONAI Label app serving the usseg models (see the module docstring)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        self.model_dir = os.path.join(app_dir, "model")
        names = [m.strip() for m in conf.get("models", ",".join(CONFIGS)).split(",") if m.strip()]
        unknown = [m for m in names if m not in CONFIGS]
        if unknown or not names:
            raise ValueError(f"--conf models {conf.get('models')!r}: unknown {unknown}; choose from {list(CONFIGS)}")
        self.models: dict[str, Any] = {}
        for name in names:
            config = CONFIGS[name]()
            config.init(name, self.model_dir, conf, None)
            self.models[name] = config
        self._label_lock = threading.Lock()
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="usseg",
            description="Ultrasound segmentation: DSANet for cines, IntraSense-Net for images",
            version="0.1.0",
        )
        install_auth()  # MONAI_LABEL_AUTH_ENABLE: working token checks on every route but /info/ (lib/auth.py)
        # per datastore and kept across restarts: next to the datastore index and the labels it counts
        self._new_labels = NewLabelCounter(os.path.join(self.datastore().state_dir(), COUNTER_FILE), self.models)

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
        strategies = {"random": Random(), "first": First()}
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
                "auto_retrain_after": c.auto_retrain_after,
            }
            for name, c in self.models.items()
        }
        return meta

    # ---- requests --------------------------------------------------------------------------------------
    def infer(self, request, datastore=None):
        model = request.get("model")
        if model not in self._infers:
            raise not_found(f"no model {model!r}; available: {sorted(self._infers)}")
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
