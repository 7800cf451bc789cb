"""A new run's model starting from parts of another trained run's model (ours, not the paper's).

The student of sequence-level distillation learns from its teacher's outputs;
it can also start from the teacher's weights where the two models share a
part. The Latent Transformer's shared embedding and source encoder have the
classes of the Transformer's (`SharedEmbedding`, `EncoderStack`), so with the
same sizes (hidden size, vocabulary, layers, heads, filter) the student's
source side can begin as the teacher's trained one: what it must learn in its
short budget is then the latents, not the source language. The paper trains
its students from scratch; `Trainer.warm_start_from` is off by default and
off in the paper configs.

A part is a pair (this model's layer attribute, the other model's layer
attribute); each weight of the first is set to the weight of the second at
the same position, which must have the same shape. Only a fresh run is warm
started: a resumed one restores its own checkpoint.
"""

from absl import logging

# The Latent Transformer's parts with a Transformer teacher's counterparts.
STUDENT_FROM_TEACHER = (("embedding", "embedding"), ("source_encoder", "encoder"))


def check_parts(parts):
  """The parts as a tuple of (attribute, attribute) string pairs."""
  checked = []
  for part in parts:
    if (
      isinstance(part, str)
      or len(part) != 2
      or not all(isinstance(name, str) and name for name in part)
    ):
      raise ValueError(
        f"warm-start part {part!r}: give a pair (this model's layer attribute, the other "
        f"model's layer attribute), e.g. {STUDENT_FROM_TEACHER[1]!r}"
      )
    checked.append(tuple(part))
  return tuple(checked)


def _layer(model, name, whose):
  layer = getattr(model, name, None)
  if layer is None or not hasattr(layer, "weights"):
    raise ValueError(f"{whose} model {type(model).__name__} has no layer {name!r} to warm-start")
  return layer


def copy_parts(model, source, parts):
  """Sets each part of `model` to the weights of its counterpart in `source`.

  Returns the number of values copied. Raises ValueError, before changing
  anything, when a part is missing or its weights differ in number or shape.
  """
  pairs = []
  for mine, theirs in check_parts(parts):
    dst, src = _layer(model, mine, "this"), _layer(source, theirs, "the other")
    if len(dst.weights) != len(src.weights):
      raise ValueError(
        f"cannot warm-start {mine!r} from {theirs!r}: {len(dst.weights)} weights against "
        f"{len(src.weights)} (are their layer counts the same?)"
      )
    for d, s in zip(dst.weights, src.weights):
      if tuple(d.shape) != tuple(s.shape):
        raise ValueError(
          f"cannot warm-start {mine!r} from {theirs!r}: weight {d.path} has shape "
          f"{tuple(d.shape)}, its counterpart {s.path} {tuple(s.shape)} (are the sizes the same?)"
        )
      pairs.append((d, s))
  for d, s in pairs:
    d.assign(s.value)
  return sum(int(d.numpy().size) for d, _ in pairs)


def from_run(model, run_dir, parts, data_dir=None):
  """Warm-starts `model`'s parts from the latest checkpoint of the trained run in run_dir."""
  from t2t_vqem.train import trainer as trainer_lib  # noqa: PLC0415 (trainer imports us)

  _, source, path = trainer_lib.load_run(run_dir, data_dir=data_dir)
  count = copy_parts(model, source, parts)
  logging.info(
    "Warm-started %s from %s (%s values)",
    ", ".join(f"{a} <- {b}" for a, b in check_parts(parts)),
    path,
    f"{count:,}",
  )
  return path
