"""Image problems (§5.2): unconditional 32x32x3 uint8 pictures, CIFAR-10 or embedded.

An ImageProblem yields batches {"targets": uint8 [B, 32, 32, 3]}; the models
see 256 values per sub-pixel, so -log P(x | z) is an exact discrete likelihood
and bits/dim follow from it (t2t_vqem.models.image_vqvae). Its batches are
`Trainer.batch_size` pictures; an evaluation shows pictures (originals over
reconstructions, and prior samples), and the test split's bits/dim (the
paper's measure) are written after training.
"""

import functools
import hashlib

import numpy as np
import tensorflow as tf

from t2t_vqem import constants
from t2t_vqem import pictures
from t2t_vqem import registry
from t2t_vqem.problems import problem
from t2t_vqem.problems import shapes


class ImageProblem(problem.Problem):
  """Pictures of `image_shape` in train/dev/test splits; subclasses implement `images`."""

  modality = "image"
  item_unit = "images"
  reports_test_results = True
  image_shape = (32, 32, 3)
  vocab = None  # no text

  def images(self, split):
    """A tf.data.Dataset of uint8 pictures of `image_shape`."""
    raise NotImplementedError

  def model_kwargs(self):
    """What a model needs to know of this problem."""
    return {"image_shape": self.image_shape}

  def dummy_features(self):
    return {"targets": tf.zeros((1,) + tuple(self.image_shape), tf.uint8)}

  def batch_amount(self, batch_tokens, batch_size):
    del batch_tokens
    return batch_size

  def output_pictures(self, model, split, count, seed):
    """The paper's Fig. 4 for the first `count` pictures of `split`, and prior samples.

    Returns:
      {"reconstructions": originals over their reconstructions,
       "samples": `count` pictures decoded from codes drawn from the prior
       with `seed` (two int32)}, each one uint8 grid [H, W, 3].
    """
    if not count:
      return {}
    originals = next(iter(self.examples(split).batch(count)))["targets"]
    rows = {
      "reconstructions": [originals, model.reconstruct(originals)],
      "samples": [self._compiled_sample(model)(count, seed)],
    }
    return {name: pictures.grid(tf.stack(row).numpy()) for name, row in rows.items()}

  def _compiled_sample(self, model):
    """model.sample as one tf.function per model, kept (a new one would retrace)."""
    if getattr(self, "_sample_of", None) is not model:
      self._sample_of, self._sample_fn = model, tf.function(model.sample)
    return self._sample_fn

  def results_line(self, results):
    """bits/dim = reconstruction + prior (the paper's Table 3 measure)."""
    return (
      f"bits/dim {results['bits_per_dim']:.4f} (reconstruction "
      f"{results['bits_per_dim_reconstruction']:.4f} + prior "
      f"{results['bits_per_dim_prior']:.4f})"
    )

  def examples(self, split):
    problem.check_split(split)
    shape = self.image_shape

    def check(image):
      tf.debugging.assert_equal(
        tf.shape(image), shape, message=f"{self.name}: every picture must be {shape}"
      )
      return {"targets": tf.ensure_shape(tf.cast(image, tf.uint8), shape)}

    return self.images(split).map(check, num_parallel_calls=tf.data.AUTOTUNE)

  def batches(
    self, split, batch_size, shuffle=False, repeat=False, num_replicas=1, seed=None, shard=None
  ):
    """Batches of `batch_size` pictures (rounded down to a multiple of num_replicas).

    shard: (n, i) keeps every n-th picture from the i-th on (one worker's share).

    Training batches (repeat=True) are all full; an evaluation split ends
    with its remainder.
    """
    size = batch_size // num_replicas * num_replicas
    if size < 1:
      raise ValueError(
        f"batch_size={batch_size} is smaller than the {num_replicas} replicas; "
        "use at least one picture per replica"
      )
    ds = self.examples(split)
    if shard:
      ds = ds.shard(*shard)
    if shuffle:
      ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if repeat:
      ds = ds.repeat()
    return ds.batch(size, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE)


@registry.register_problem
class ImageShapes(ImageProblem):
  """Embedded default image problem: procedural shapes on gradients (no download).

  Args:
    seed: the generator seed.
    num_train, num_eval: pictures in train and in each of dev and test.
  """

  def __init__(self, data_dir=None, seed=1234, num_train=20000, num_eval=1000):
    super().__init__(data_dir)
    self.seed, self.num_train, self.num_eval = seed, num_train, num_eval
    self._digests = {}  # split -> sha256 of its pictures

  @functools.lru_cache(maxsize=None)
  def _pictures(self, split):
    if split == "train":
      return shapes.generate("train", self.seed, self.num_train)
    return shapes.drop_seen(
      shapes.generate(split, self.seed, self.num_eval), self._pictures("train")
    )

  def split_fingerprint(self, split):
    """The generator parameters the split depends on, and the sha256 of its pictures.

    dev and test depend on train too (pictures seen in train are dropped).
    """
    problem.check_split(split)
    pictures = self._pictures(split)
    if split not in self._digests:
      self._digests[split] = hashlib.sha256(np.ascontiguousarray(pictures).tobytes()).hexdigest()
    fingerprint = {"seed": self.seed, "num_train": self.num_train}
    if split != "train":
      fingerprint["num_eval"] = self.num_eval
    fingerprint.update(count=len(pictures), sha256=self._digests[split])
    return fingerprint

  def images(self, split):
    problem.check_split(split)
    return tf.data.Dataset.from_tensor_slices(self._pictures(split))


# Our split name -> the TFDS split of cifar10: dev is the last 2% of train.
CIFAR10_SPLITS = {
  constants.TRAIN: "train[:98%]",
  constants.DEV: "train[98%:]",
  constants.TEST: "test",
}


@registry.register_problem("image_cifar10")
class ImageCifar10(ImageProblem):
  """CIFAR-10 pictures through tensorflow-datasets, unconditional (labels unused)."""

  def __init__(self, data_dir=None, tfds_data_dir=None, download=True):
    super().__init__(data_dir)
    self.tfds_data_dir, self.download = tfds_data_dir, download
    self._full_name = None

  def split_fingerprint(self, split):
    """The TFDS dataset (name/version) and split the pictures come from."""
    problem.check_split(split)
    if self._full_name is None:
      import tensorflow_datasets as tfds

      self._full_name = tfds.builder("cifar10", data_dir=self.tfds_data_dir).info.full_name
    return {"tfds": self._full_name, "split": CIFAR10_SPLITS[split]}

  def images(self, split):
    import tensorflow_datasets as tfds

    problem.check_split(split)
    ds = tfds.load(
      "cifar10",
      split=CIFAR10_SPLITS[split],
      data_dir=self.tfds_data_dir,
      download=self.download,
      shuffle_files=False,
    )
    return ds.map(lambda ex: ex["image"])
