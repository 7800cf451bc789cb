"""Checkpoints to trust: readable before they are restored, finite before they are written.

A checkpoint may be unreadable when its writer was killed or its disk filled
(a truncated data file, a missing index or shard). `newest_readable` reads
every tensor of each candidate, newest first, and skips the ones that fail, so
a run resumes from the newest checkpoint that can be read; reading is checked
apart from restoring, so a checkpoint that reads but does not fit the model is
reported as a mismatch, not skipped.

`nonfinite_variables` is checked before every save: a checkpoint holding a NaN
or Inf weight, optimizer slot or codebook entry is never written, so rotation
(which deletes the oldest) can only ever delete good ones in favour of good ones.
"""

import os

from absl import logging
import tensorflow as tf


class CheckpointError(RuntimeError):
  """No checkpoint of a run can be read, or one would be written with non-finite values."""


def unreadable(path):
  """None when every tensor of checkpoint `path` reads, else why not (one line)."""
  try:
    dtypes = tf.train.load_checkpoint(path).get_variable_to_dtype_map()
    names = sorted(dtypes)
    # RestoreV2 reads every kind of tensor, the data iterator's variant state too.
    tf.raw_ops.RestoreV2(
      prefix=path,
      tensor_names=names,
      shape_and_slices=[""] * len(names),
      dtypes=[dtypes[n] for n in names],
    )
  except (tf.errors.OpError, IndexError, ValueError) as e:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
  return None


def listed(directory):
  """The checkpoint paths a CheckpointManager's state file lists in `directory`, newest first."""
  state = tf.train.get_checkpoint_state(directory)
  if not state:
    return []
  paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
  if state.model_checkpoint_path not in paths:
    paths.append(state.model_checkpoint_path)
  # get_checkpoint_state has already joined relative entries to `directory`.
  return sorted(set(paths), key=_number, reverse=True)


def _number(path):
  tail = path.rsplit("-", 1)[-1]
  return int(tail) if tail.isdigit() else -1


def newest_readable(directory):
  """The newest checkpoint in `directory` whose every tensor reads; None when it has none.

  Each unreadable one is logged and skipped. Raises CheckpointError when there
  are checkpoints but none of them can be read.
  """
  skipped = []
  for path in listed(directory):
    why = unreadable(path)
    if why is None:
      if skipped:
        logging.warning("Resuming from %s, the newest checkpoint that can be read", path)
      return path
    logging.warning("Checkpoint %s cannot be read (%s); trying the one before it", path, why)
    skipped.append(f"{os.path.basename(path)} ({why})")
  if skipped:
    raise CheckpointError(
      f"no checkpoint in {directory!r} can be read: {'; '.join(skipped)}; "
      f"remove the folder to start afresh"
    )
  return None


@tf.function
def _finite_flags(variables):
  return tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in variables])


def nonfinite_variables(variables):
  """The paths of the floating-point variables holding a NaN or an Inf."""
  floats = [v for v in variables if tf.as_dtype(v.dtype).is_floating]
  if not floats:
    return []
  flags = _finite_flags([tf.convert_to_tensor(v) for v in floats]).numpy()
  return [getattr(v, "path", v.name) for v, ok in zip(floats, flags) if not ok]


def random_states(model):
  """The state variables of the model's Keras seed generators, in the model's own order.

  Keras keeps them out of a model's own checkpoint; the trainer saves them
  (as "random"), or a resumed run would draw other dropout masks and samples.
  The order is the model's (its layers as built), not the generators' names:
  Keras numbers unnamed generators process-wide, so a model rebuilt after
  others (a pipeline's student, a test) gets other names for the same layers.
  """
  return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def restore(trackables, path):
  """Restores {name: trackable} from checkpoint `path`; every saved object must match.

  A checkpoint of an older version holds no "random" states: the rest is
  restored, with a warning that the resumed run draws differently.
  """
  if "random" in trackables and not any(
    name.startswith("random/") for name, _ in tf.train.list_variables(path)
  ):
    logging.warning(
      "%s holds no random-number state (written by an older version): the "
      "resumed run draws other dropout masks and samples than an unbroken one",
      path,
    )
    trackables = {k: v for k, v in trackables.items() if k != "random"}
  tf.train.Checkpoint(**trackables).restore(path).assert_existing_objects_matched()
