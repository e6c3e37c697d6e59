"""A run's batch size and length when they are not given: from the size of its training set.

A fixed batch and epoch count suits one dataset size only: 128 images a batch for 10 epochs is ~3,900
optimizer steps on FashionMNIST's 50,000 images but ~80 on a folder of 1,000, far from converged. So a
run without --batch-size takes a batch that still gives an epoch many steps, and a run without --epochs
sees at least IMAGE_BUDGET training images (within MIN_EPOCHS and MAX_EPOCHS epochs). Against sweeps of
epochs x batch size on 500 and 2,000 images the number of passes decided, not the number of steps: 100
epochs was the best setting at every batch size, and 24 epochs of batch 16 (3,000 steps) stayed 2-4 points
below 100 epochs of batch 64 (3,100 steps). At 10,000 images 200,000 images seen (20 epochs) left ASGE 3.1
points below 50 epochs (3 seeds) and backprop 2.6, hence 500,000. The measurements are in docs/results.md
("Batch size and training length").
"""

from __future__ import annotations

import math

MAX_BATCH = 128  # the batch of a large training set (FashionMNIST's, CIFAR's); `ffvision bench`'s default
MIN_BATCH = 16  # below it a step's overhead dominates and batch statistics get noisy
STEPS_PER_EPOCH = 30  # the batch halves (down to MIN_BATCH) until an epoch has at least this many steps
IMAGE_BUDGET = 500_000  # training images a run without --epochs sees at least (50 epochs of 10,000 images)
MIN_EPOCHS = 10
MAX_EPOCHS = 100  # caps the epochs of a small training set (the longest setting measured, the best at 500 images)


def default_batch_size(train_images: int, processes: int = 1) -> int:
    """The batch for a training set of this size: MAX_BATCH, halved down to MIN_BATCH until an epoch has at least
    STEPS_PER_EPOCH steps; a multiple of the processes (the batch is global)."""
    batch = MAX_BATCH
    while batch > MIN_BATCH and train_images / batch < STEPS_PER_EPOCH:
        batch //= 2
    return math.ceil(batch / processes) * processes


def default_epochs(train_images: int) -> int:
    """The epochs that show the run at least IMAGE_BUDGET training images, within [MIN_EPOCHS, MAX_EPOCHS] (whatever
    the batch size: passes over the data decided, not optimizer steps)."""
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(IMAGE_BUDGET / max(1, train_images))))
