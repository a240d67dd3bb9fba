"""Offline photo sets for the lessons, cut from the photographs that ship inside scikit-image and
scikit-learn (no network), written as a class-per-folder dataset the app's folder loader accepts.

Two sets:
- `scenes`: each class is one colour photograph, its images random crops of it. Pixels alone tell
  these apart (each photo has its own colours), so it is no test of what ImageNet features add.
- `textures`: each class is a material (brick, grass, gravel, the moon's surface, a star field,
  stained tissue), its images crops at random places and scales, in grey with a random brightness
  and contrast, randomly flipped and turned: the Brodatz protocol of texture recognition. Only
  content tells the classes apart, which is what ImageNet features are known to capture.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CROP = 96   # px written; the loader resizes to the plan's image size


def _grey(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 3:
        a = (a[..., :3].astype(float) @ [0.299, 0.587, 0.114])
    return a.astype(float)


def _sources(kind: str) -> dict[str, np.ndarray]:
    import skimage.data as sk
    if kind == "scenes":
        from sklearn.datasets import load_sample_images
        china, flower = load_sample_images().images
        return {"astronaut": sk.astronaut(), "cat": sk.chelsea(), "coffee": sk.coffee(), "rocket": sk.rocket(),
                "china": china, "flower": flower}
    return {"brick": _grey(sk.brick()), "grass": _grey(sk.grass()), "gravel": _grey(sk.gravel()),
            "moon": _grey(sk.moon()), "stars": _grey(sk.hubble_deep_field()),
            "tissue": _grey(sk.immunohistochemistry())}


def _crop(src: np.ndarray, rng: np.random.Generator, jitter: bool) -> np.ndarray:
    h, w = src.shape[:2]
    side = int(rng.uniform(0.2, 0.45) * min(h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    c = src[y:y + side, x:x + side]
    if not jitter:
        return c.astype(np.uint8)
    c = np.rot90(c, int(rng.integers(4)))
    if rng.random() < 0.5:
        c = c[:, ::-1]
    # brightness and contrast drawn per image: the mean grey level says nothing about the class
    c = (c - c.mean()) / (c.std() + 1e-6) * rng.uniform(25, 60) + rng.uniform(80, 170)
    return np.clip(c, 0, 255).astype(np.uint8)


def write(root: Path, kind: str = "textures", per_class: int = 60, seed: int = 0) -> Path:
    """`root`/<class>/<n>.png, `per_class` crops a class; the same files for the same arguments."""
    rng = np.random.default_rng(seed)
    for name, src in _sources(kind).items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = Image.fromarray(_crop(src, rng, jitter=kind == "textures"))
            img.convert("RGB").resize((CROP, CROP), Image.BILINEAR).save(root / name / f"{i:03d}.png")
    return root
