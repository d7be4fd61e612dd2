"""Record a PyTorch Lightning run: hyperparameters, per-step metrics, checkpoints.

    from nbmodelhub.tracking.callbacks.lightning import ModelHubCallback
    trainer = L.Trainer(max_epochs=3, callbacks=[ModelHubCallback("resnet")])
    trainer.fit(module, data)   # → a new version of resnet

Params are the module's ``hparams`` (``self.save_hyperparameters()``) plus the trainer's
schedule; every metric logged with ``self.log`` is recorded at the global step where its value
changes; each checkpoint Lightning saves is also a snapshot; the end of ``fit`` commits. An
exception inside ``fit`` leaves the run interrupted and recoverable.
"""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch.callbacks import Callback

import nbmodelhub as mh
from nbmodelhub.tracking.callbacks.common import numeric, plain_params
from nbmodelhub.tracking.run import Run

TRAINER_SETTINGS = ("max_epochs", "max_steps", "accumulate_grad_batches", "gradient_clip_val", "precision")


class ModelHubCallback(Callback):
    """A Lightning ``Callback`` that records ``fit`` as a run of model ``name``."""

    def __init__(
        self,
        name: str,
        repo: mh.Repository | None = None,
        params: dict[str, Any] | None = None,
        parent: str | None = None,
        message: str = "",
    ) -> None:
        self.name = name
        self.repo = repo
        self.extra_params = dict(params or {})
        self.parent = parent
        self.message = message
        self.run: Run | None = None
        self.version: mh.Version | None = None
        self._seen: dict[str, float] = {}

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        settings = {k: getattr(trainer, k, None) for k in TRAINER_SETTINGS}
        params = plain_params(dict(getattr(pl_module, "hparams", {}) or {}), list(getattr(pl_module, "hparams", {})))
        params.update(plain_params(settings, TRAINER_SETTINGS))
        params.update(self.extra_params)
        self.run = mh.run(self.name, params=params, parent=self.parent, repo=self.repo, message=self.message)
        self.version = None
        self._seen = {}

    def _record(self, trainer: Any) -> None:
        if self.run is None:
            return
        fresh = {
            k: v
            for k, v in numeric(trainer.callback_metrics).items()
            if k not in self._seen or not _same(self._seen[k], v)
        }
        if fresh:
            self._seen.update(fresh)
            self.run.log(int(trainer.global_step), **fresh)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._record(trainer)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self._record(trainer)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.snapshot(pl_module, int(trainer.global_step))

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.run is not None:
            self.run.stop(type(exception).__name__)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.run is None or self.run.status != "running":
            return
        step = int(trainer.global_step)
        last = self.run.state.last_snapshot()
        if last is None or last.get("s") != step:
            self.run.snapshot(pl_module, step)
        self.version = self.run.commit()


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))
