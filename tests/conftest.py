"""Shared test settings: deterministic seeds, hypothesis profiles (``ci``: modest and derandomized,
for 2-core CI; ``random``: fresh examples on every run), the measurement caches
(structlayers.utils.cache) in a temporary folder, never the user's home, and data."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# "ci" (the default) replays the same examples on every run, so CI never fails by chance;
# HYPOTHESIS_PROFILE=random draws new ones each run (and more of them) to look for new failures.
settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("random", settings.get_profile("ci"), max_examples=100, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(1)

_CACHE_DIR = tempfile.mkdtemp(prefix="structlayers-test-cache-")
os.environ["STRUCTLAYERS_CACHE_DIR"] = _CACHE_DIR  # subprocesses (CLI tests) inherit it
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 MNIST-format images whose class shows as a bright column band, so that a couple of epochs learn."""
    from structlayers.lab.data import write_idx

    folder = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    labels = np.arange(64) % 10
    images = (rng.integers(0, 60, (64, 28, 28))
              + 150 * (np.arange(28)[None, None, :] // 3 == labels[:, None, None])).astype(np.uint8)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return folder
