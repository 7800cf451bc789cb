"""Picture grids (the paper's Fig. 4) as PNG files and TensorBoard images."""

import numpy as np
import tensorflow as tf

from t2t_vqem import files


def grid(rows, border=2):
  """Picture rows [R, N, H, W, C] uint8 -> one uint8 picture, R rows of N, white borders."""
  rows = np.asarray(rows, np.uint8)
  if rows.ndim != 5:
    raise ValueError(
      f"grid wants [rows, pictures, height, width, channels]; got shape {rows.shape}"
    )
  r, n, h, w, c = rows.shape
  out = np.full([r * (h + border) + border, n * (w + border) + border, c], 255, np.uint8)
  for i in range(r):
    for j in range(n):
      y, x = border + i * (h + border), border + j * (w + border)
      out[y : y + h, x : x + w] = rows[i, j]
  return out


def write_png(path, picture):
  """Writes a uint8 [H, W, C] picture to `path` as PNG (atomically: t2t_vqem.files)."""
  files.write_bytes(path, tf.io.encode_png(tf.convert_to_tensor(picture, tf.uint8)).numpy())
