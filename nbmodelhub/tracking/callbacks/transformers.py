"""Record a Hugging Face ``Trainer`` run: its training arguments, every logged loss, its checkpoints.

    from nbmodelhub.tracking.callbacks.transformers import ModelHubCallback
    trainer = Trainer(model, args, train_dataset=ds, callbacks=[ModelHubCallback("gpt2-ft")])
    trainer.train()        # → a new version of gpt2-ft, with a snapshot at every save_steps

Each ``on_log`` becomes ``run.log(global_step, loss=…, learning_rate=…, grad_norm=…)``, each
checkpoint save a ``run.snapshot`` (written into the repository, not only the output folder),
and the end of training commits the version with the final weights. If ``trainer.train()``
raises (or the kernel is interrupted), the run stays open in this process: calling
``trainer.train()`` again continues it; ``callback.run.stop()`` leaves it interrupted instead.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

import nbmodelhub as mh
from nbmodelhub.tracking.callbacks.common import numeric, plain_params
from nbmodelhub.tracking.run import Run

# The training arguments that are hyperparameters (the rest are paths, logging and hardware).
HYPERPARAMETERS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "lr_scheduler_type",
    "warmup_steps",
    "warmup_ratio",
    "optim",
    "seed",
    "fp16",
    "bf16",
    "label_smoothing_factor",
)


class ModelHubCallback(TrainerCallback):
    """A ``TrainerCallback`` that records the training as a run of model ``name``."""

    def __init__(
        self,
        name: str,
        repo: mh.Repository | None = None,
        params: dict[str, Any] | None = None,
        parent: str | None = None,
        message: str = "",
        snapshot_on_save: bool = True,
    ) -> None:
        self.name = name
        self.repo = repo
        self.extra_params = dict(params or {})
        self.parent = parent
        self.message = message
        self.snapshot_on_save = snapshot_on_save
        self.run: Run | None = None
        self.version: mh.Version | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.run is not None and self.run.status == "running":
            return  # trainer.train() called again after an interruption: carry on
        params = plain_params(args.to_dict(), HYPERPARAMETERS)
        params.update(self.extra_params)
        self.run = mh.run(self.name, params=params, parent=self.parent, repo=self.repo, message=self.message)
        self.version = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        metrics = numeric(logs, skip=("epoch", "total_flos"))
        if self.run is not None and metrics:
            self.run.log(int(state.global_step), **metrics)

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.run is not None and self.snapshot_on_save and model is not None:
            self.run.snapshot(model, int(state.global_step))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.run is None or self.run.status != "running":
            return
        step = int(state.global_step)
        last = self.run.state.last_snapshot()
        if model is not None and (last is None or last.get("s") != step):
            self.run.snapshot(model, step)
        self.version = self.run.commit()
