"""The SeaweedFS S3 server (built from source, cached) for the object-storage tests."""

from __future__ import annotations

import itertools
import os

import pytest

from tests.objectstore.seaweed import SeaweedS3, build

_buckets = itertools.count(1)


@pytest.fixture(scope="session")
def weed_binary() -> str:
    return build()


@pytest.fixture(scope="session")
def seaweed(weed_binary: str):
    with SeaweedS3(weed_binary) as store:
        yield store


@pytest.fixture
def bucket(seaweed: SeaweedS3) -> str:
    """A fresh bucket per test, so the store's per-bucket counters are the test's own."""
    name = f"models-{os.getpid()}-{next(_buckets)}"
    seaweed.client().create_bucket(Bucket=name)
    return name
