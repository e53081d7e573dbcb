"""The demo's data: scikit-learn's bundled 8x8 digits, split once into train and held-out test.

Bundled with scikit-learn, so the demo needs no internet (TF Serving's tutorial downloads MNIST).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_FEATURES = 64
NUM_CLASSES = 10
NUM_TEST = 1000
_SPLIT_SEED = 0


@dataclass(frozen=True)
class DigitsSplit:
    train_images: np.ndarray  # float32 [N, 64] scaled to [0, 1]
    train_labels: np.ndarray  # int64 [N]
    test_images: np.ndarray
    test_labels: np.ndarray


def load_digits_split() -> DigitsSplit:
    """A fixed shuffle so exporter and client agree on which digits are held out."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(labels))
    test, train = order[:NUM_TEST], order[NUM_TEST:]
    return DigitsSplit(images[train], labels[train], images[test], labels[test])


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]
