"""Shared fixtures of the apps tests."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """Three colour classes (blue, green, red) of noisy 20x24 RGB images, plus one corrupt file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for channel, name in zip((2, 1, 0), ("blue", "green", "red")):
        (root / name).mkdir()
        for i in range(10):
            pixels = rng.integers(0, 80, (20, 24, 3), dtype=np.uint8)
            pixels[..., channel] += 150
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "red" / "broken.png").write_bytes(b"not an image")
    return root
