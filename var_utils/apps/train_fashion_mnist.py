"""Train the Fashion-MNIST CNN whose weights ship as package data (``var_utils/data/fashion_mnist_cnn.safetensors``).

Usage::

    python -m var_utils.apps.train_fashion_mnist --epochs 6 --out var_utils/data/fashion_mnist_cnn.safetensors

Training is seeded and uses deterministic algorithms, so the same seed,
epochs, thread count and torch version give the same weights: Adam with a
cosine learning-rate decay, no augmentation. The script prints the test
accuracy after every epoch and writes the weights atomically.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .._io import atomic_output_path
from ..datasets.fashion_mnist import load_fashion_mnist
from ..evaluation.metrics import accuracy
from ..models import FASHION_MNIST_CNN_WEIGHTS, FashionMNISTCNN


def train(epochs: int, batch_size: int, learning_rate: float, seed: int, data_root: Path | None) -> FashionMNISTCNN:
    """Train a :class:`FashionMNISTCNN` and print the test accuracy after each epoch.

    Parameters
    ----------
    epochs : int
        Passes over the 60,000 training images.
    batch_size : int
        Images per optimiser step.
    learning_rate : float
        Initial learning rate of Adam, decayed to 0 by a cosine schedule.
    seed : int
        Seed of the initialisation and of the shuffling.
    data_root : Path or None
        Fashion-MNIST folder of :func:`var_utils.datasets.fashion_mnist.load_fashion_mnist`.

    Returns
    -------
    FashionMNISTCNN
        The trained model, in eval mode.
    """
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(seed)
    train_images, train_labels = load_fashion_mnist(data_root, train=True)
    test_images, test_labels = load_fashion_mnist(data_root, train=False)

    model = FashionMNISTCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    steps_per_epoch = -(-len(train_labels) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    loss_function = nn.CrossEntropyLoss()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train_labels), generator=generator)
        for batch in order.split(batch_size):
            optimizer.zero_grad()
            loss = loss_function(model(train_images[batch]), train_labels[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
        test_accuracy = accuracy(model, test_images, test_labels)
        wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
        print(
            f"epoch {epoch}/{epochs}: test accuracy {test_accuracy:.4f} (wall {wall:.0f} s, CPU {cpu:.0f} s)",
            flush=True,
        )
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, train, and save the weights as safetensors.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3, help="initial learning rate, decayed to 0 by a cosine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=None, help="Fashion-MNIST folder (default: cache)")
    parser.add_argument("--out", type=Path, default=FASHION_MNIST_CNN_WEIGHTS)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
        parser.error("--epochs and --batch-size must be >= 1 and --lr > 0")

    model = train(args.epochs, args.batch_size, args.lr, args.seed, args.data_root)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    with atomic_output_path(args.out) as tmp_path:
        save_file(state, str(tmp_path), metadata={"epochs": str(args.epochs), "seed": str(args.seed)})
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
