"""How sharp is the soft E step? The sampling distribution of Eq. 9 on trained runs.

Soft EM draws each latent's codes from p(j | z_e) = softmax_j(-||z_e - e_j||^2 /
temperature) (Eq. 9). When the distances of the nearest codes differ by much
more than 1, p is nearly one-hot and soft EM draws what hard EM picks. For each
finished Latent Transformer run given, this script encodes the dev split's
targets (latents from the target encoder, as in training) and reports, over
the real latents:

  * the mean squared norm of z_e and of the codebook rows in use, and the
    spread of z_e: its mean squared distance to the mean of all z_e (an
    encoder whose outputs all lie close together leaves k-means few clusters),
  * the gap ||z_e - e_2nd||^2 - ||z_e - e_1st||^2 (median),
  * the probability of the nearest code (mean) and the fraction of latents
    where it exceeds 0.99,
  * exp(entropy of p) per latent (mean): the codes a latent effectively
    spreads its draws over,
  * the distinct nearest codes over the split, and the median distance of a
    latent to its nearest code against that to the nearest of the codes no
    latent chooses (stranded codes lie far from every z_e).

  python benchmarks/sampling_sharpness.py RUN_DIR [RUN_DIR ...]   (e.g. codebook_usage.py runs)
"""

import sys

import numpy as np
import tensorflow as tf

from t2t_vqem import config
from t2t_vqem.bottlenecks import equations as eq
from t2t_vqem.train import trainer as trainer_lib


def sharpness(run_dir):
  problem, model, _ = trainer_lib.load_run(run_dir)
  bottleneck = model.bottleneck
  codebook = tf.reshape(bottleneck.codebook, [-1, model.hidden_size])
  temperature = getattr(bottleneck, "temperature", 1.0)

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
  def latents(inputs, targets):
    memory, memory_mask = model.encode_source(inputs)
    z_e, latent_mask = model.encode_target(targets, memory, memory_mask)
    return tf.boolean_mask(z_e, latent_mask)

  z = np.concatenate(
    [
      latents(tf.cast(f["inputs"], tf.int32), tf.cast(f["targets"], tf.int32)).numpy()
      for f in problem.batches("dev", 2048)
    ]
  )
  d = eq.squared_distances(tf.constant(z), codebook).numpy() / temperature  # [N, K]
  order = np.sort(d, axis=1)
  logits = -d - (-d).max(1, keepdims=True)
  p = np.exp(logits)
  p /= p.sum(1, keepdims=True)
  entropy = -(p * np.log(np.maximum(p, 1e-30))).sum(1)
  nearest = d.argmin(1)
  used = np.unique(nearest)
  return {
    "run": run_dir,
    "latents": len(z),
    "z_e_sq_norm": float((z**2).sum(1).mean()),
    "z_e_spread": float(((z - z.mean(0)) ** 2).sum(1).mean()),
    "code_sq_norm": float((codebook.numpy()[used] ** 2).sum(1).mean()),
    "gap_median": float(np.median(order[:, 1] - order[:, 0])),
    "p_nearest_mean": float(p.max(1).mean()),
    "frac_p_over_0.99": float((p.max(1) > 0.99).mean()),
    "codes_per_latent": float(np.exp(entropy).mean()),
    "distinct_nearest": len(used),
    "dist_nearest_median": float(np.median(order[:, 0])),
    "dist_unused_median": float(np.median(np.delete(d, used, axis=1).min(1))),
  }


def main(run_dirs):
  config.register_everything()
  keys = None
  for run_dir in run_dirs:
    row = sharpness(run_dir)
    if keys is None:
      keys = list(row)
      print("| " + " | ".join(keys) + " |")
      print("|" + "---|" * len(keys))
    print(
      "| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()) + " |"
    )


if __name__ == "__main__":
  main(sys.argv[1:])
