"""Train the Fashion-MNIST models whose weights ship as package data: the CNN, the ViT and the B-cos network.

Usage::

    python -m var_utils.apps.train_fashion_mnist --arch cnn    # var_utils/models/data/fashion_mnist_cnn.safetensors
    python -m var_utils.apps.train_fashion_mnist --arch vit    # ... fashion_mnist_vit.safetensors
    python -m var_utils.apps.train_fashion_mnist --arch bcos   # ... fashion_mnist_bcos.safetensors

Training is seeded and uses deterministic algorithms, so the same seed,
epochs, thread count and torch version give the same weights. Each
architecture has its recipe (:data:`RECIPES`): the CNN Adam with cross-entropy,
the ViT AdamW with a one-epoch warm-up, random horizontal flips, random
placement (each batch at one random size from 28 to 56 pixels, each image at a
random position of a 56-pixel background) and CutMix on half of the batches, the B-cos network Adam with the ``bcos``
package's binary cross-entropy. All decay the learning rate to 0 by a cosine.
The script prints the test accuracy after every epoch and writes the weights atomically.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .._io import atomic_output_path
from ..datasets.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist, normalize_fashion_mnist, resize_images
from ..evaluation.metrics import accuracy
from ..models import (
    FASHION_MNIST_BCOS_WEIGHTS,
    FASHION_MNIST_CNN_WEIGHTS,
    FASHION_MNIST_VIT_WEIGHTS,
    FashionMNISTCNN,
    fashion_mnist_bcos,
    fashion_mnist_vit,
    upscale_to_vit,
)


def _bcos_loss() -> nn.Module:
    from bcos.modules import BinaryCrossEntropyLoss

    return BinaryCrossEntropyLoss()


@dataclass(frozen=True)
class Recipe:
    """How one architecture is trained.

    Parameters
    ----------
    build : callable
        Returns the untrained model.
    weights : Path
        Where the shipped weights live (the default ``--out``).
    epochs : int
        Default number of epochs.
    learning_rate : float
        Default peak learning rate.
    loss : callable
        Returns the loss module, called with (logits, labels).
    weight_decay : float
        AdamW's decoupled weight decay; 0 uses plain Adam.
    warmup_epochs : int
        Epochs of linear learning-rate warm-up before the cosine decay.
    prepare : callable
        Maps (N, 1, 28, 28) normalised images to the model's input.
    augment : callable or None
        ``(images, labels, generator) -> (images, targets)``: the training-time
        augmentation of a batch of prepared images (targets: class indices or
        probabilities, both of which the loss takes), or None.
    """

    build: Callable[[], nn.Module]
    weights: Path
    epochs: int
    learning_rate: float
    loss: Callable[[], nn.Module] = nn.CrossEntropyLoss
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    prepare: Callable[[torch.Tensor], torch.Tensor] = torch.nn.Identity()
    augment: Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]] | None = None


def random_flip_and_placement(images: torch.Tensor, generator: torch.Generator, placement: float = 1.0) -> torch.Tensor:
    """Flip each image with probability 1/2, shrink the batch to one random size, place each image at random.

    The side is drawn uniformly from half to all of the images' side; the
    images are resized to it (bilinear) and pasted at uniformly random
    positions on a background of the dataset's blank pixel value. Like the
    random-resized crops of ImageNet training, this shows the model objects
    at the scales and places it meets in grids: a 28-pixel cell in one
    quadrant of a 56-pixel grid.

    Parameters
    ----------
    images : torch.Tensor
        (N, C, S, S) normalised images.
    generator : torch.Generator
        Source of the randomness.

    Returns
    -------
    torch.Tensor
        (N, C, S, S).
    """
    count, side = images.shape[0], images.shape[-1]
    flipped = torch.rand(count, generator=generator) < 0.5
    images = torch.where(flipped.view(-1, 1, 1, 1), images.flip(-1), images)
    size = int(torch.randint(side // 2, side + 1, (1,), generator=generator))
    small = resize_images(images, size)
    canvas = torch.full_like(images, normalize_fashion_mnist(torch.tensor(0.0)).item())
    rows = torch.randint(0, side - size + 1, (count,), generator=generator).tolist()
    columns = torch.randint(0, side - size + 1, (count,), generator=generator).tolist()
    for index, (row, column) in enumerate(zip(rows, columns)):
        canvas[index, :, row : row + size, column : column + size] = small[index]
    return canvas


def cutmix(
    images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al. 2019) as DeiT trains ViTs: a random box of the batch's next image pasted in, labels mixed.

    The kept share ``lam`` is uniform in [0, 1]; the box has side ratio
    ``sqrt(1 - lam)`` and a uniformly random centre (clipped at the border);
    each image gets the box of the image after it in the batch, and its
    target is ``lam' * own + (1 - lam') * other`` with ``lam'`` the share it
    really keeps.

    Parameters
    ----------
    images : torch.Tensor
        (N, C, S, S).
    labels : torch.Tensor
        (N,) class indices.
    generator : torch.Generator
        Source of the randomness.
    num_classes : int
        Length of the target vectors.

    Returns
    -------
    images : torch.Tensor
        (N, C, S, S) mixed images.
    targets : torch.Tensor
        (N, num_classes) class probabilities.
    """
    side = images.shape[-1]
    keep = torch.rand(1, generator=generator).item()
    box = round(side * (1 - keep) ** 0.5)
    centre_row, centre_column = torch.randint(0, side, (2,), generator=generator).tolist()
    top, left = max(centre_row - box // 2, 0), max(centre_column - box // 2, 0)
    bottom, right = min(centre_row + box - box // 2, side), min(centre_column + box - box // 2, side)
    mixed = images.clone()
    mixed[:, :, top:bottom, left:right] = images.roll(1, dims=0)[:, :, top:bottom, left:right]
    kept = 1 - (bottom - top) * (right - left) / side**2
    own = torch.nn.functional.one_hot(labels, num_classes).to(images.dtype)
    return mixed, kept * own + (1 - kept) * own.roll(1, dims=0)


def placement_and_cutmix(
    images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ViT's augmentation: :func:`random_flip_and_placement`, then :func:`cutmix` on every other batch on average.

    Placement shows objects at the scale and place of a grid cell; CutMix
    shows several objects in one image with a label for each, as in DeiT's
    recipe. Half of the batches stay unmixed (class-index targets), which
    keeps the accuracy on clean images within a short training.

    Returns
    -------
    images : torch.Tensor
        The augmented batch.
    targets : torch.Tensor
        (N,) class indices, or (N, classes) probabilities for a mixed batch.
    """
    images = random_flip_and_placement(images, generator)
    if torch.rand(1, generator=generator).item() < 0.5:
        return images, labels
    return cutmix(images, labels, generator, len(FASHION_MNIST_CLASSES))


RECIPES = {
    "cnn": Recipe(FashionMNISTCNN, FASHION_MNIST_CNN_WEIGHTS, epochs=6, learning_rate=2e-3),
    "vit": Recipe(
        fashion_mnist_vit,
        FASHION_MNIST_VIT_WEIGHTS,
        epochs=25,
        learning_rate=1e-3,
        weight_decay=0.05,
        warmup_epochs=1,
        prepare=upscale_to_vit,
        augment=placement_and_cutmix,
    ),
    "bcos": Recipe(fashion_mnist_bcos, FASHION_MNIST_BCOS_WEIGHTS, epochs=12, learning_rate=1e-3, loss=_bcos_loss),
}


def _schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + torch.cos(torch.tensor(torch.pi * progress)).item())

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(
    arch: str, epochs: int, batch_size: int, learning_rate: float, seed: int, data_root: Path | None
) -> nn.Module:
    """Train one architecture by its :data:`RECIPES` entry and print the test accuracy after each epoch.

    Parameters
    ----------
    arch : str
        A key of :data:`RECIPES`.
    epochs : int
        Passes over the 60,000 training images.
    batch_size : int
        Images per optimiser step.
    learning_rate : float
        Peak learning rate.
    seed : int
        Seed of the initialisation, the shuffling and the augmentation.
    data_root : Path or None
        Fashion-MNIST folder of :func:`var_utils.datasets.fashion_mnist.load_fashion_mnist`.

    Returns
    -------
    nn.Module
        The trained model, in eval mode.
    """
    recipe = RECIPES[arch]
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(seed)
    train_images, train_labels = load_fashion_mnist(data_root, train=True)
    test_images, test_labels = load_fashion_mnist(data_root, train=False)
    test_images = recipe.prepare(test_images)

    model = recipe.build()
    if recipe.weight_decay:
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    steps_per_epoch = -(-len(train_labels) // batch_size)
    if recipe.warmup_epochs:
        schedule = _schedule(optimizer, recipe.warmup_epochs * steps_per_epoch, epochs * steps_per_epoch)
    else:
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    loss_function = recipe.loss()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train_labels), generator=generator)
        for batch in order.split(batch_size):
            images, targets = recipe.prepare(train_images[batch]), train_labels[batch]
            if recipe.augment is not None:
                images, targets = recipe.augment(images, targets, generator)
            optimizer.zero_grad()
            loss = loss_function(model(images), targets)
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
    parser.add_argument("--arch", choices=sorted(RECIPES), default="cnn")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=None, help="Fashion-MNIST folder (default: cache)")
    parser.add_argument("--out", type=Path, default=None, help="default: the shipped weights file")
    args = parser.parse_args(argv)
    recipe = RECIPES[args.arch]
    epochs = recipe.epochs if args.epochs is None else args.epochs
    learning_rate = recipe.learning_rate if args.lr is None else args.lr
    out = recipe.weights if args.out is None else args.out
    if epochs < 1 or args.batch_size < 1 or learning_rate <= 0:
        parser.error("--epochs and --batch-size must be >= 1 and --lr > 0")

    model = train(args.arch, epochs, args.batch_size, learning_rate, args.seed, args.data_root)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    with atomic_output_path(out) as tmp_path:
        save_file(state, str(tmp_path), metadata={"arch": args.arch, "epochs": str(epochs), "seed": str(args.seed)})
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
