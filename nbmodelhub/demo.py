"""The README's first command ends here: train a small model, commit two versions, show them.

    python -m nbmodelhub.demo [--repo PATH_OR_URL]

Uses the default repository ($MODELHUB_PATH, else ~/.modelhub) unless ``--repo`` is given.
"""

from __future__ import annotations

import argparse
import sys

from nbmodelhub import api, cli


def _train(model: object, lr: float, steps: int, seed: int) -> list[tuple[int, float]]:
    import torch

    torch.manual_seed(seed)
    x = torch.randn(256, 16)
    y = (x[:, :4].sum(dim=1) > 0).long()
    opt = torch.optim.SGD(model.parameters(), lr=lr)  # type: ignore[attr-defined]
    curve = []
    for step in range(1, steps + 1):
        loss = torch.nn.functional.cross_entropy(model(x), y)  # type: ignore[operator]
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append((step, loss.item()))
    return curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbmodelhub.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=None, help="repository path or URL (default: $MODELHUB_PATH or ~/.modelhub)")
    args = parser.parse_args(argv)
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    # Freeze the first layer for the second round: the diff should show only the head changed.
    repo = api.open(args.repo)
    print(f"repository: {repo.location}\n")

    curve = _train(model, lr=0.1, steps=20, seed=1)
    v1 = repo.commit(
        model, name="demo-mlp", message="baseline", params={"lr": 0.1, "steps": 20}, metrics={"loss": curve}
    )
    model[0].requires_grad_(False)
    curve = _train(model, lr=0.05, steps=20, seed=2)
    v2 = repo.commit(
        model,
        name="demo-mlp",
        message="fine-tune the head, first layer frozen",
        params={"lr": 0.05, "steps": 20, "frozen": "0"},
        metrics={"loss": curve},
    )
    print(f"committed {v1.ref} and {v2.ref}\n")
    repo_args = ["--repo", repo.location]
    for command in (["list", "demo-mlp", "--last", "5"], ["diff", v1.ref, v2.ref], ["desc", v2.ref]):
        print(f"$ dlv {' '.join(command)}")
        code = cli.main([*repo_args, *command])
        print()
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
