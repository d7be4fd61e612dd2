"""Training functions for evaluate tests: real SGD on a fixed batch, so a bigger step size learns faster."""

from __future__ import annotations

from typing import Any

STEPS = 12


def fit(model: Any, config: dict[str, Any], report: Any) -> dict[str, float]:
    import torch

    torch.manual_seed(0)
    x = torch.randn(int(config["batch"]), 3, 16, 16)
    y = torch.randint(0, 10, (int(config["batch"]),))
    opt = torch.optim.SGD(model.parameters(), lr=float(config["lr"]))
    model.train()
    loss = torch.tensor(0.0)
    for step in range(1, STEPS + 1):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        report(step, loss=loss.item())
    return {"loss": float(loss.item()), "steps": STEPS}


def broken(model: Any, config: dict[str, Any], report: Any) -> dict[str, float]:
    raise RuntimeError(f"no data for lr={config['lr']}")
