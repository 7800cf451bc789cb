"""Benchmark: where the image quickstart's training step spends its time.

Builds `image_shapes_em_quickstart.gin`'s model (batch 32, random pictures) and
times, interleaved in one process, the whole training step's gradients and each
part's forward and backward pass on that step's own inputs: the encoder, the
bottleneck, the decoder's convolutions, its output layer (32 channels -> 3 x 256
logits per position), the reconstruction term over the batch's 25 million
logits (both ways: TensorFlow's sparse softmax cross entropy and
logsumexp minus the picked logit, which the model uses), and the latent prior
(its Transformer stack, and its logits with the cross entropy against the soft
targets). Medians over --reps repetitions, in ms.

  python benchmarks/image_step_profile.py --reps=7
"""

import time

from absl import app
from absl import flags
import gin
import numpy as np
import tensorflow as tf

from t2t_vqem import config as config_lib
from t2t_vqem import registry

flags.DEFINE_integer("reps", 7, "Timed repetitions of every part.")
flags.DEFINE_string("config", "image_shapes_em_quickstart.gin", "The image config.")
FLAGS = flags.FLAGS


def gradients(fn, inputs, variables=()):
  """A tf.function computing d sum(fn(*inputs)) / d (inputs, variables)."""

  @tf.function
  def run():
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      total = tf.reduce_sum(fn(*inputs))
    return tape.gradient(total, list(inputs) + list(variables))

  return run


def main(_):
  config_lib.register_everything()
  config_lib.parse_gin([FLAGS.config], [])
  model = registry.build_model(gin.query_parameter("Trainer.model"))
  rng = np.random.default_rng(0)
  images = tf.constant(rng.integers(0, 256, size=(32, 32, 32, 3)).astype(np.uint8))
  pixels = tf.cast(images, tf.float32) / 127.5 - 1.0
  z_e = model.encode_continuous(images)
  out = model.bottleneck(z_e, training=True)
  z_q = tf.identity(out.quantized)
  decoder = model.decoder

  features = decoder.features(z_q)
  logits = model.decode_logits(z_q)
  labels = tf.cast(images, tf.int32)
  codes = tf.reshape(out.codes, [32, -1])
  soft = tf.reshape(out.soft_targets, [32, model.num_latents, model.num_codes])
  prior_in = model.prior_inputs(tf.pad(codes[:, :-1], [[0, 0], [1, 0]]))
  prior_out = model.prior(prior_in)

  def whole_step():
    losses, _ = model.loss_terms({"targets": images}, training=True)
    return tf.add_n([num / den for num, den in losses.values()])

  parts = {
    "whole training step (gradients of the loss)": gradients(
      whole_step, [], model.trainable_variables
    ),
    "encoder": gradients(model.encoder, [pixels], model.encoder.trainable_variables),
    "bottleneck": gradients(lambda z: model.bottleneck(z, training=True).quantized, [z_e]),
    "decoder convolutions": gradients(decoder.features, [z_q], decoder.trainable_variables),
    "decoder output layer": gradients(
      decoder.to_logits, [features], decoder.to_logits.trainable_variables
    ),
    "reconstruction term, sparse softmax cross entropy": gradients(
      lambda x: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x), [logits]
    ),
    "reconstruction term, logsumexp - picked logit": gradients(
      lambda x: tf.reduce_logsumexp(x, -1) - tf.gather(x, labels, batch_dims=4), [logits]
    ),
    "prior Transformer stack": gradients(
      lambda x: model.prior(x, training=True), [prior_in], model.prior.trainable_variables
    ),
    "prior logits and cross entropy": gradients(
      lambda y: -soft * tf.nn.log_softmax(model.prior_logits(y)),
      [prior_out],
      model.prior_logits.trainable_variables,
    ),
  }
  for run in parts.values():
    run()
  times = {name: [] for name in parts}
  for _ in range(FLAGS.reps):
    for name, run in parts.items():
      start = time.perf_counter()
      for value in run():
        if value is not None:
          tf.convert_to_tensor(value).numpy()
      times[name].append((time.perf_counter() - start) * 1e3)
  whole = np.median(times["whole training step (gradients of the loss)"])
  print(f"\n{FLAGS.config}, batch 32, medians of {FLAGS.reps}\n")
  print("| part (forward + backward) | ms | share of the whole step |")
  print("|---|---|---|")
  for name, t in times.items():
    print(f"| {name} | {np.median(t):.1f} | {np.median(t) / whole:.0%} |")


if __name__ == "__main__":
  app.run(main)
