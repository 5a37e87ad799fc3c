"""Shared test settings: deterministic seeds, a modest hypothesis profile for 2-core CI, and the
measurement caches (structlayers.cache) in a temporary folder, never the user's home."""

import atexit
import os
import shutil
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(1)

_CACHE_DIR = tempfile.mkdtemp(prefix="structlayers-test-cache-")
os.environ["STRUCTLAYERS_CACHE_DIR"] = _CACHE_DIR  # subprocesses (CLI tests) inherit it
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
