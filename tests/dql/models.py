"""Small real models for the DQL tests: AlexNet-shaped CNNs (torch) with known layer order."""

from __future__ import annotations

from typing import Any


def alexnet(seed: int = 0, second_pool: str = "max") -> Any:
    """conv1 → pool1 (max) → relu1 → conv2 → pool2 (max|avg) → conv3 → relu3 → pool3 (max) → fc."""
    import torch
    import torch.nn as nn

    class MiniAlexNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.pool1 = nn.MaxPool2d(2)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.pool2 = nn.AvgPool2d(2) if second_pool == "avg" else nn.MaxPool2d(2)
            self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
            self.relu3 = nn.ReLU()
            self.pool3 = nn.MaxPool2d(2)
            self.fc = nn.Linear(16 * 2 * 2, 10)

        def forward(self, x: Any) -> Any:
            x = self.relu1(self.pool1(self.conv1(x)))
            x = self.pool2(self.conv2(x))
            x = self.pool3(self.relu3(self.conv3(x)))
            return self.fc(torch.flatten(x, 1))

    torch.manual_seed(seed)
    return MiniAlexNet().eval()


def batch(seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed + 100)
    return torch.randn(4, 3, 16, 16)
