"""Codebook usage of hard EM vs soft EM over codebook sizes and seeds (the paper's Fig. 3).

For every (model, K, seed) it trains a Latent Transformer with its quickstart
config (`latent_transformer_vq_quickstart.gin`: hard EM, or
`latent_transformer_em_quickstart.gin`: Monte-Carlo soft EM, n_s = 10) on the
embedded problem, cut like the quickstart pipeline (5,000 training pairs) and
with the quickstart pipeline's student schedule (em_distill_quickstart.gin),
for --train_steps steps, then measures on the dev split:

  * Trainer.evaluate(): reconstruction loss (label-smoothed token cross
    entropy), nll, and "usage" / "perplexity": fraction of codes used and
    exp(entropy) of the code histogram *per dev batch* (~2048 target tokens,
    i.e. ~2048 / 2^n_c latents), averaged over batches. Soft EM samples its
    codes here too, as in training. A batch holds fewer latents than K = 2^14
    codes, so the per-batch usage is bounded by latents / K.
  * the same, over the whole dev split at once, from the nearest code of every
    latent (`bottleneck.encode`: argmin, no sampling, for both modes): "set usage" and
    "set perplexity". Also bounded by (dev latents) / K, printed.
  * the last training step's usage and perplexity (one training batch).

Rows are cached in OUTPUT_DIR/<run>/codebook_result.json; rerunning resumes.

  python benchmarks/codebook_usage.py --output_dir=/tmp/bench_codebook --train_steps=200
  python benchmarks/codebook_usage.py --output_dir=/tmp/bench_codebook --train_steps=200 \
      --dead_code_restart_steps=0     # the raw algorithms, no dead-code restart
"""

import gc
import json
import os
import time
import traceback

from absl import app
from absl import flags
from absl import logging
import gin
import keras
import numpy as np
import tensorflow as tf

from t2t_vqem import config as config_lib
from t2t_vqem.cli import common  # noqa: F401  (the shared flags: --data_dir, --gin_param, ...)
from t2t_vqem.train import trainer as trainer_lib

flags.DEFINE_string("output_dir", "/tmp/bench_codebook", "Where the runs go.")
flags.DEFINE_integer("train_steps", 200, "Training steps of every run.")
flags.DEFINE_list("sizes", ["256", "4096", "16384"], "Codebook sizes K.")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Trainer.seed values.")
flags.DEFINE_list("models", ["latent_transformer_vq", "latent_transformer_em"], "Models.")
flags.DEFINE_integer(
  "dead_code_restart_steps",
  None,
  "If set, binds <bottleneck>.dead_code_restart_steps (0 = off); "
  "default: the quickstart config's (20).",
)
flags.DEFINE_integer("num_train", 5000, "translate_grammar_ende.num_train.")
FLAGS = flags.FLAGS

MODE = {"latent_transformer_vq": "hard EM", "latent_transformer_em": "soft EM"}
BOTTLENECK = {"latent_transformer_vq": "hard_em", "latent_transformer_em": "soft_em"}

# em_distill_quickstart.gin's Pipeline.shared_gin and student schedule.
SHARED = ["translate_grammar_ende.vocab_size = 2000", "translate_grammar_ende.max_length = 64"]
STUDENT = [
  "Trainer.eval_every = 0",
  "Trainer.eval_bleu_examples = 0",
  "Trainer.log_every = 50",
  "make_optimizer.warmup_steps = 150",
  "make_optimizer.decay_steps = 600",
]


def run_name(model, k, seed):
  restart = (
    "" if FLAGS.dead_code_restart_steps is None else f"_restart{FLAGS.dead_code_restart_steps}"
  )
  return f"{model}_K{k}_seed{seed}{restart}"


def dev_set_codes(trainer):
  """Histogram [K] of the nearest code of every dev latent (whole split)."""
  model = trainer.model

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
  def codes(inputs, targets):
    memory, memory_mask = model.encode_source(inputs)
    z_e, latent_mask = model.encode_target(targets, memory, memory_mask)
    idx = tf.boolean_mask(model.bottleneck.encode(z_e), latent_mask)
    return tf.math.bincount(idx, minlength=model.num_codes, maxlength=model.num_codes)

  counts = np.zeros([model.num_codes], np.int64)
  for features in trainer.problem.batches("dev", trainer.batch_tokens):
    counts += codes(
      tf.cast(features["inputs"], tf.int32), tf.cast(features["targets"], tf.int32)
    ).numpy()
  return counts


def one_run(model, k, seed):
  run_dir = os.path.join(FLAGS.output_dir, run_name(model, k, seed))
  path = os.path.join(run_dir, "codebook_result.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  config = model + "_quickstart.gin"
  bindings = (
    SHARED
    + STUDENT
    + [
      f"translate_grammar_ende.num_train = {FLAGS.num_train}",
      f"Trainer.train_steps = {FLAGS.train_steps}",
      f"Trainer.checkpoint_every = {FLAGS.train_steps}",
      f"Trainer.seed = {seed}",
      f"{BOTTLENECK[model]}.codebook_size = {k}",
      f"{model}.latent_loss_start_step = 100",
    ]
  )
  if FLAGS.dead_code_restart_steps is not None:
    bindings.append(
      f"{BOTTLENECK[model]}.dead_code_restart_steps = {FLAGS.dead_code_restart_steps}"
    )
  gin.clear_config()
  config_lib.parse_gin([config], bindings + FLAGS.gin_param)
  restart = gin.query_parameter(f"{BOTTLENECK[model]}.dead_code_restart_steps")
  started = time.perf_counter()
  trainer = trainer_lib.Trainer(run_dir, data_dir=FLAGS.data_dir)
  last = trainer.train()
  train_seconds = time.perf_counter() - started
  result = {
    "model": model,
    "mode": MODE[model],
    "K": k,
    "seed": seed,
    "dead_code_restart_steps": restart,
    "steps": trainer.step,
    "train_seconds": round(train_seconds, 1),
    "last_train": last,
  }
  try:
    result["dev"] = trainer.evaluate()
  except Exception:  # pylint: disable=broad-except
    result["dev_error"] = traceback.format_exc()
    logging.error("Trainer.evaluate failed for %s:\n%s", run_dir, result["dev_error"])
  counts = dev_set_codes(trainer)
  total = counts.sum()
  probs = counts[counts > 0] / total
  result["dev_set"] = {
    "latents": int(total),
    "codes_used": int((counts > 0).sum()),
    "usage": float((counts > 0).mean()),
    "perplexity": float(np.exp(-(probs * np.log(probs)).sum())),
  }
  with open(path, "w") as f:
    json.dump(result, f, indent=2)
  logging.info("%s: %s", run_dir, json.dumps({k_: result[k_] for k_ in ("dev_set", "last_train")}))
  del trainer
  gin.clear_config()
  keras.backend.clear_session()
  gc.collect()
  return result


def mean_std(values, fmt):
  values = [v for v in values if v is not None]
  if not values:
    return "n/a"
  return f"{np.mean(values):{fmt}} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:{fmt}}"


def main(_):
  config_lib.register_everything()
  results = []
  for k in FLAGS.sizes:
    for model in FLAGS.models:
      for seed in FLAGS.seeds:
        results.append(one_run(model, int(k), int(seed)))
  restart = sorted({str(r["dead_code_restart_steps"]) for r in results})
  print(
    f"\n{FLAGS.train_steps} steps per run, seeds {','.join(FLAGS.seeds)}, "
    f"dead_code_restart_steps = {'/'.join(restart)}; mean ± std over seeds (n-1)\n"
  )
  print(
    "| mode | K | dev usage (per batch) | dev perplexity (per batch) | "
    "dev-set usage (nearest code) | dev-set perplexity | codes used (dev set) | "
    "last train usage | last train perplexity | dev reconstruction | dev nll |"
  )
  print("|" + "---|" * 11)
  for k in FLAGS.sizes:
    for model in FLAGS.models:
      rows = [r for r in results if r["model"] == model and r["K"] == int(k)]
      dev = [r.get("dev", {}) for r in rows]
      print(
        f"| {MODE[model]} | {k} "
        f"| {mean_std([d.get('usage') for d in dev], '.4f')} "
        f"| {mean_std([d.get('perplexity') for d in dev], '.1f')} "
        f"| {mean_std([r['dev_set']['usage'] for r in rows], '.4f')} "
        f"| {mean_std([r['dev_set']['perplexity'] for r in rows], '.1f')} "
        f"| {mean_std([r['dev_set']['codes_used'] for r in rows], '.0f')} "
        f"| {mean_std([r['last_train'].get('usage') for r in rows], '.4f')} "
        f"| {mean_std([r['last_train'].get('perplexity') for r in rows], '.1f')} "
        f"| {mean_std([d.get('reconstruction') for d in dev], '.3f')} "
        f"| {mean_std([d.get('nll') for d in dev], '.3f')} |"
      )
  latents = sorted({r["dev_set"]["latents"] for r in results})
  print(
    f"\ndev latents per run: {latents}; training seconds per run: "
    f"{min(r['train_seconds'] for r in results):.0f}-"
    f"{max(r['train_seconds'] for r in results):.0f}"
  )
  errors = [r for r in results if "dev_error" in r]
  for r in errors:
    print(
      f"Trainer.evaluate failed for {run_name(r['model'], r['K'], r['seed'])}:\n{r['dev_error']}"
    )
  with open(os.path.join(FLAGS.output_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
