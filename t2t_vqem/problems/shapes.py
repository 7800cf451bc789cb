"""Procedural 32x32 RGB pictures for the embedded image problem (no download).

Each picture is a two-colour linear gradient background with one to three
filled shapes on it (disc, rectangle, triangle or ring), each of a colour
from a 24-colour palette and of a random size and position, some filled with
stripes of a second colour. The
structure (flat regions, edges, a few colours) is what a VQ-VAE can learn in
minutes on a CPU, and the pictures are still varied enough that 8x8x10 codes
cannot store them by heart.

Everything is drawn with numpy from a seeded generator, so a (seed, split)
pair always gives the same pictures; the splits use disjoint generator
streams and any picture that also occurs in train is dropped from dev/test.
"""

import numpy as np

from t2t_vqem import constants

SIZE = 32
SPLIT_STREAMS = {split: stream for stream, split in enumerate(constants.SPLITS)}
_GRID_Y, _GRID_X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


# 24 colours: every shape, stripe and gradient end is one of them.
PALETTE = np.array(
  [
    [0, 0, 0],
    [255, 255, 255],
    [128, 128, 128],
    [200, 30, 30],
    [30, 160, 50],
    [40, 70, 200],
    [250, 210, 40],
    [250, 130, 20],
    [140, 50, 170],
    [30, 190, 200],
    [240, 120, 170],
    [120, 70, 30],
    [0, 100, 90],
    [180, 220, 90],
    [100, 20, 40],
    [210, 180, 140],
    [20, 30, 80],
    [255, 90, 90],
    [90, 220, 160],
    [160, 160, 255],
    [60, 60, 60],
    [190, 190, 190],
    [130, 140, 20],
    [230, 60, 230],
  ],
  np.float32,
)


def _colour(rng):
  return PALETTE[rng.integers(0, len(PALETTE))]


def _background(rng):
  angle = rng.uniform(0, 2 * np.pi)
  t = (np.cos(angle) * _GRID_X + np.sin(angle) * _GRID_Y) / SIZE
  t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
  return _colour(rng) * (1 - t[..., None]) + _colour(rng) * t[..., None]


def _shape_mask(rng):
  """bool [SIZE, SIZE]: the pixels of one random shape."""
  kind = rng.integers(0, 4)
  cy, cx = rng.uniform(4, SIZE - 4, size=2)
  r = rng.uniform(3, 11)
  if kind == 0:  # disc
    return (_GRID_Y - cy) ** 2 + (_GRID_X - cx) ** 2 <= r**2
  if kind == 1:  # axis-aligned rectangle
    h, w = rng.uniform(3, 12, size=2)
    return (np.abs(_GRID_Y - cy) <= h) & (np.abs(_GRID_X - cx) <= w)
  if kind == 2:  # triangle: inside three half-planes
    angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
    ys, xs = cy + r * np.sin(angles), cx + r * np.cos(angles)
    inside = np.ones([SIZE, SIZE], bool)
    for i in range(3):
      y0, x0, y1, x1 = ys[i], xs[i], ys[(i + 1) % 3], xs[(i + 1) % 3]
      inside &= (x1 - x0) * (_GRID_Y - y0) - (y1 - y0) * (_GRID_X - x0) >= 0
    return inside
  d2 = (_GRID_Y - cy) ** 2 + (_GRID_X - cx) ** 2  # ring
  return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)


def draw(rng):
  """One uint8 picture [32, 32, 3] from a numpy Generator."""
  image = _background(rng)
  for _ in range(rng.integers(1, 4)):
    mask = _shape_mask(rng)
    fill = np.broadcast_to(_colour(rng), image.shape)
    if rng.random() < 0.3:  # stripes of a second colour
      angle = rng.uniform(0, np.pi)
      period = rng.uniform(3, 7)
      stripes = np.sin((np.cos(angle) * _GRID_X + np.sin(angle) * _GRID_Y) * 2 * np.pi / period)
      fill = np.where((stripes > 0)[..., None], fill, _colour(rng))
    image = np.where(mask[..., None], fill, image)
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def generate(split, seed, count):
  """`count` pictures uint8 [count, 32, 32, 3] of a split ("train", "dev" or "test")."""
  if split not in SPLIT_STREAMS:
    raise ValueError(f"unknown split {split!r}; accepted: {', '.join(SPLIT_STREAMS)}")
  rng = np.random.default_rng([seed, SPLIT_STREAMS[split]])
  images = (
    np.stack([draw(rng) for _ in range(count)]) if count else np.zeros([0, SIZE, SIZE, 3], np.uint8)
  )
  return images


def drop_seen(images, seen):
  """The rows of `images` whose bytes are not among the pictures `seen`."""
  known = {row.tobytes() for row in seen}
  return images[[row.tobytes() not in known for row in images]]
