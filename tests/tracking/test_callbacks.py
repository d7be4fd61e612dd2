"""Framework callbacks on real (tiny) training: Hugging Face Trainer on GPT-2, PyTorch Lightning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import assert_state_equal, state_of

import nbmodelhub as mh


class RandomTokens(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, n: int = 16, length: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 256, (n, length), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


@pytest.mark.slow
def test_trainer_callback_records_params_per_step_loss_and_snapshots(repo: mh.Repository, tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from nbmodelhub.tracking.callbacks.transformers import ModelHubCallback

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=256, n_positions=64))
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=6,
        logging_steps=1,
        save_steps=3,
        report_to=[],
        use_cpu=True,
        per_device_train_batch_size=4,
        learning_rate=3e-4,
        disable_tqdm=True,
    )
    callback = ModelHubCallback("tiny-gpt2", repo=repo, params={"data": "random tokens"})
    Trainer(model=model, args=args, train_dataset=RandomTokens(), callbacks=[callback]).train()

    v = callback.version
    assert v is not None and v.ref == "tiny-gpt2@1"
    assert v.params["learning_rate"] == 3e-4 and v.params["max_steps"] == 6
    assert v.params["per_device_train_batch_size"] == 4 and v.params["data"] == "random tokens"
    assert [s for s, _ in v.curves["loss"]] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(x) and 3 < x < 8 for _, x in v.curves["loss"])  # ln(256) ≈ 5.5 at the start
    assert "learning_rate" in v.curves
    assert v.snapshot_steps == (3, 6)
    assert_state_equal(state_of(model), repo.load(v, framework="torch"))
    # the step-3 snapshot is the trainer's own checkpoint-3 (weights differ from the end)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "out" / "checkpoint-3" / "model.safetensors")
    at3 = repo.load(v, framework="torch", snapshot=3)
    assert torch.equal(saved["transformer.h.0.attn.c_attn.weight"], at3["transformer.h.0.attn.c_attn.weight"])
    assert not torch.equal(at3["transformer.h.0.attn.c_attn.weight"], model.transformer.h[0].attn.c_attn.weight)


@pytest.mark.slow
def test_lightning_callback_records_hparams_step_metrics_and_checkpoints(repo: mh.Repository, tmp_path: Path) -> None:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from nbmodelhub.tracking.callbacks.lightning import ModelHubCallback

    class Regressor(L.LightningModule):
        def __init__(self, lr: float = 0.05, hidden: int = 8) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
    module = Regressor(lr=0.05)
    callback = ModelHubCallback("regressor", repo=repo)
    trainer = L.Trainer(
        max_steps=6,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback, ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)],
    )
    trainer.fit(module, data)

    v = callback.version
    assert v is not None and v.ref == "regressor@1"
    assert v.params["lr"] == 0.05 and v.params["hidden"] == 8 and v.params["max_steps"] == 6
    assert [s for s, _ in v.curves["train_loss"]] == [1, 2, 3, 4, 5, 6]
    assert v.snapshot_steps == (3, 6)
    assert_state_equal(state_of(module), repo.load(v, framework="torch"))
