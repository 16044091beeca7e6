"""Shared fixtures: small seeded CNNs and the pretrained EfficientNet-Lite0 (loaded once per session)."""

from __future__ import annotations

from collections import OrderedDict

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

NUM_OUTPUTS = 5


def make_cnn(inplace: bool = False, seed: int = 0) -> nn.Sequential:
    """conv-relu-conv-relu-GAP-linear with seeded weights (``inplace`` only changes the ReLUs)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 6, 3, padding=1),
            relu1=nn.ReLU(inplace=inplace),
            conv2=nn.Conv2d(6, 8, 3, stride=2, padding=1),
            relu2=nn.ReLU(inplace=inplace),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(8, NUM_OUTPUTS),
        )
    ).eval()


@pytest.fixture
def plain_cnn() -> nn.Sequential:
    """A plain-ReLU CNN with 5 outputs, fresh for every test (tests may change its flags)."""
    return make_cnn(inplace=False)


@pytest.fixture
def inplace_cnn() -> nn.Sequential:
    """The same weights as ``plain_cnn`` with ``ReLU(inplace=True)``."""
    return make_cnn(inplace=True)


@pytest.fixture
def small_images() -> torch.Tensor:
    """Two seeded 3 × 10 × 10 images with both signs."""
    return torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def lite0() -> nn.Module:
    """Pretrained EfficientNet-Lite0, loaded once; tests must not change it."""
    from var_utils.models import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def half_and_half_input(lite0) -> torch.Tensor:
    """The 224 × 224 half-and-half image (cat left, espresso right), preprocessed for Lite0."""
    from var_utils.datasets.photos import half_and_half

    return lite0.preprocess(half_and_half())


def pytest_terminal_summary(terminalreporter) -> None:
    """Say loudly when the real-browser test was skipped, and why (pytest lists skip reasons only with -rs)."""
    for report in terminalreporter.stats.get("skipped", []):
        if "test_explore_browser" in report.nodeid:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            terminalreporter.write_sep("=", "real-browser test SKIPPED", yellow=True, bold=True)
            terminalreporter.write_line(f"{report.nodeid}: {reason}")
