"""What the VQ bottleneck costs the image autoencoder's reconstruction, early in training.

Trains the encoder and decoder of `image_shapes_vq_quickstart.gin` (the
quickstart image VQ-VAE on the embedded `image_shapes` problem) on
-log P(x | z) alone (Adam at the config's peak learning rate, constant), three
ways, same seed and batches:

  * continuous: the decoder reads z_e itself (no quantization, no prior);
  * hard_em: z_q from the config's hard_em bottleneck (+ commitment loss);
  * soft_em: the same with the soft_em bottleneck, n_s = 10
    (`image_shapes_em_quickstart.gin`, whose other settings are the same).

Every --eval_every steps it prints the test split's reconstruction term in
bits/dim (-log2 P(x | z) per sub-pixel; 8.0 is a uniform guess). If the
quantized runs track the continuous one, slow progress of the image VQ-VAE
comes from the autoencoder, not from the bottleneck. The latent prior is not
trained here (see benchmarks/image_em.py for the full bound).

  python benchmarks/image_bottleneck_cost.py --train_steps=300
"""

import os
import time

from absl import app
from absl import flags
import gin
import keras
import numpy as np
import tensorflow as tf

from t2t_vqem import config as config_lib
from t2t_vqem import registry

flags.DEFINE_integer("train_steps", 300, "Training steps of each variant.")
flags.DEFINE_integer("eval_every", 100, "Steps between test evaluations.")
flags.DEFINE_integer("seed", 1, "Seed of the initial weights and of the batch order.")
flags.DEFINE_list("variants", ["continuous", "hard_em", "soft_em"], "Which variants to train.")
flags.DEFINE_multi_string("gin_param", [], "Extra Gin bindings for every variant.")
FLAGS = flags.FLAGS

CONFIG = "image_shapes_vq_quickstart.gin"
CONFIGS = {"continuous": CONFIG, "hard_em": CONFIG, "soft_em": "image_shapes_em_quickstart.gin"}


def run(variant):
  """Trains one variant; returns [(step, test reconstruction bits/dim, seconds)]."""
  gin.clear_config()
  config_lib.parse_gin([CONFIGS[variant]], FLAGS.gin_param)
  keras.utils.set_random_seed(FLAGS.seed)
  problem = registry.build_problem(gin.query_parameter("Trainer.problem"))
  model = registry.build_model(gin.query_parameter("Trainer.model"), **problem.model_kwargs())
  optimizer = keras.optimizers.Adam(gin.query_parameter("make_optimizer.learning_rate"))
  batch_size = gin.query_parameter("Trainer.batch_size")
  variables = model.encoder.trainable_variables + model.decoder.trainable_variables

  def reconstruction(images, training):
    z_e = model.encode_continuous(images)
    if variant == "continuous":
      z, commitment = z_e, 0.0
    else:
      out = model.bottleneck(z_e, training=training)
      z, commitment = tf.identity(out.quantized), out.loss
    logits = model.decode_logits(z)
    nll = tf.reduce_mean(
      tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(images, tf.int32), logits=logits
      )
    )
    return nll, commitment

  @tf.function
  def train_step(images):
    with tf.GradientTape() as tape:
      nll, commitment = reconstruction(images, True)
      loss = nll + commitment
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

  @tf.function
  def test_nll(images):
    return reconstruction(images, False)[0] * tf.cast(tf.shape(images)[0], tf.float32)

  train = iter(problem.batches("train", batch_size, shuffle=True, repeat=True, seed=FLAGS.seed))
  test = [batch["targets"] for batch in problem.batches("test", 100)]
  count = sum(int(images.shape[0]) for images in test)
  curve, started = [], time.perf_counter()
  for step in range(1, FLAGS.train_steps + 1):
    train_step(next(train)["targets"])
    if step % FLAGS.eval_every == 0 or step == FLAGS.train_steps:
      bits = sum(float(test_nll(images)) for images in test) / count / np.log(2.0)
      curve.append((step, bits, time.perf_counter() - started))
      print(f"{variant}: step {step}  test reconstruction {bits:.3f} bits/dim", flush=True)
  return curve


def main(_):
  config_lib.register_everything()
  curves = {variant: run(variant) for variant in FLAGS.variants}
  configs = ", ".join(sorted({CONFIGS[v] for v in curves}))
  print(f"\n{configs}, seed {FLAGS.seed}: test reconstruction term, bits/dim\n")
  print("| step | " + " | ".join(curves) + " |")
  print("|---|" + "---|" * len(curves))
  for row in zip(*curves.values()):
    print(f"| {row[0][0]} | " + " | ".join(f"{bits:.3f}" for _, bits, _ in row) + " |")
  print("\ntraining seconds: " + ", ".join(f"{v} {c[-1][2]:.0f}" for v, c in curves.items()))


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(main)
