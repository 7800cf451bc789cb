"""The dev / test / train split and TSV files shared by the real-corpus scripts."""

import os
import random


def write_splits(pairs, output_dir, dev_size, test_size, seed):
  """Shuffles (source, target) pairs with `seed`, cuts dev and test (each at most a
  tenth) and the rest as train, and writes OUTPUT_DIR/{dev,test,train}.tsv, each file
  renamed into place once whole. Returns {split: its pairs}."""
  pairs = list(pairs)
  random.Random(seed).shuffle(pairs)
  dev_size = min(dev_size, len(pairs) // 10)
  test_size = min(test_size, len(pairs) // 10)
  splits = {
    "dev": pairs[:dev_size],
    "test": pairs[dev_size : dev_size + test_size],
    "train": pairs[dev_size + test_size :],
  }
  os.makedirs(output_dir, exist_ok=True)
  for name, split in splits.items():
    path = os.path.join(output_dir, f"{name}.tsv")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      f.writelines(f"{source}\t{target}\n" for source, target in split)
    os.replace(path + ".tmp", path)
  return splits
