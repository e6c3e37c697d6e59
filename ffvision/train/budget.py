"""A run's batch size and length when they are not given: from the size of its training set.

A fixed batch and epoch count suits one dataset size only: 128 images a batch for 10 epochs is ~3,900
optimizer steps on FashionMNIST's 50,000 images but ~80 on a folder of 1,000, far from converged. So a
run without --batch-size takes a batch that still gives an epoch many steps, and a run without --epochs
trains for at least STEP_BUDGET optimizer steps (and at least MIN_EPOCHS epochs). The measurements behind
the numbers are in docs/data.md ("Batch size and training length").
"""

from __future__ import annotations

import math

MAX_BATCH = 128  # the batch of a large training set (FashionMNIST's, CIFAR's); `ffvision bench`'s default
MIN_BATCH = 16  # below it a step's overhead dominates and batch statistics get noisy
STEPS_PER_EPOCH = 64  # the batch halves (down to MIN_BATCH) until an epoch has at least this many steps
STEP_BUDGET = 3000  # optimizer steps a run without --epochs takes at least (within MAX_EPOCHS)
MIN_EPOCHS = 10
MAX_EPOCHS = 200  # caps the epochs of a tiny training set (a few hundred images)


def default_batch_size(train_images: int, processes: int = 1) -> int:
    """The batch for a training set of this size: MAX_BATCH, halved down to MIN_BATCH until an epoch has at least
    STEPS_PER_EPOCH steps; a multiple of the processes (the batch is global)."""
    batch = MAX_BATCH
    while batch > MIN_BATCH and train_images / batch < STEPS_PER_EPOCH:
        batch //= 2
    return math.ceil(batch / processes) * processes


def default_epochs(train_images: int, batch_size: int) -> int:
    """The epochs that give at least STEP_BUDGET optimizer steps, within [MIN_EPOCHS, MAX_EPOCHS]."""
    steps_per_epoch = max(1, math.ceil(train_images / batch_size))
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(STEP_BUDGET / steps_per_epoch)))

