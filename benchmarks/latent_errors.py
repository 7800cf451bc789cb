"""Benchmark: where a latent model's predicted latents differ from its target encoder's.

For the first --sentences pairs of a split, a trained latent_transformer run gives two latent
sequences per sentence: the target encoder's on the reference (`bottleneck.encode`: for the
EM bottlenecks the hard E step, Eq. 1, the nearest codes, also in soft EM) and the latent
predictor's, decoded greedily from the source.
Prints how often the predicted latent count is right, too short or too long, how many
positions agree, and the BLEU of the translations grouped by: all latents equal / same
count, some codes differ / wrong count. With --latent_beams, the BLEU of decoding with beam
search over the latents (alpha 0 and 0.6). With --soft_inputs, the BLEU when the decoder gets,
instead of the predicted code's embedding, the embedding expected under the predictor's
distribution at each position (given the greedy latents before it): over all codes, over the
top 10 and the top 3, and at softmax temperature 0.5 (soft EM's decoder saw averaged codes in
training, Eq. 11). For a one-block VectorQuantizer (hard_em, soft_em, vq), also how soft the
soft E step's posterior (§3.2, softmax of -||z_e - e_j||^2 / temperature) is on the reference
latents: its mean entropy and top-1 probability, and for m draws (the run's num_samples, 10
in hard EM runs) the expected number of distinct codes, sum_j 1 - (1 - p_j)^m, and the
probability that all m draws are one code, sum_j p_j^m, exact, not sampled. Nothing is
trained; no timing.

  python benchmarks/latent_errors.py --run_dir=/tmp/distill_big10k/student --sentences=500
"""

import os
import sys

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from t2t_vqem import config as config_lib  # noqa: E402
from t2t_vqem import decode  # noqa: E402
from t2t_vqem import metrics  # noqa: E402
from t2t_vqem.bottlenecks import VectorQuantizer  # noqa: E402
from t2t_vqem.bottlenecks import equations  # noqa: E402
from t2t_vqem.constants import PAD_ID  # noqa: E402
from t2t_vqem.layers import compression  # noqa: E402
from t2t_vqem.models import latent_transformer  # noqa: E402
from t2t_vqem.train import trainer as trainer_lib  # noqa: E402

flags.DEFINE_string("run_dir", None, "A latent_transformer_* training run (its output_dir).")
flags.DEFINE_string("split", "test", "Split whose first --sentences pairs are read.")
flags.DEFINE_integer("sentences", 500, "Sentence pairs.")
flags.DEFINE_list("latent_beams", [], "Beam sizes over the latents to score, e.g. 2,4.")
flags.DEFINE_bool("soft_inputs", False, "Also score expected code embeddings as decoder input.")
FLAGS = flags.FLAGS

SOFT_INPUTS = (
  ("expected, all codes", 0, 1.0),
  ("expected, top 10", 10, 1.0),
  ("expected, top 3", 3, 1.0),
  ("expected, temperature 0.5", 0, 0.5),
)


def has_posterior(bottleneck):
  """Whether the soft E step's posterior is defined here: a one-block VectorQuantizer."""
  return isinstance(bottleneck, VectorQuantizer) and bottleneck.num_blocks == 1


def latent_pairs(model, source, reference):
  """(the target encoder's codes, the predictor's greedy codes, the soft E step's
  posterior [n, K] at the encoder's latents or None) of one pair."""
  memory, memory_mask, codes, count = model.source_latents(tf.constant([source]), 1, 0.0)
  z_e, latent_mask = model.encode_target(tf.constant([reference]), memory, memory_mask)
  n = int(latent_mask.numpy().sum())
  encoded = model.bottleneck.encode(z_e).numpy()[0][:n]
  posterior = None
  if has_posterior(model.bottleneck):
    codebook = tf.convert_to_tensor(model.bottleneck.codebook)
    logits = equations.code_logits(
      tf.cast(z_e[:, :n], tf.float32), codebook[tf.newaxis], model.bottleneck.temperature
    )
    posterior = tf.nn.softmax(logits)[0].numpy()
  return encoded, codes.numpy()[0][: int(count.numpy()[0])], posterior


def soft_input_decoder(model, top_k, temperature):
  """Decode function: greedy latents, then the decoder fed sum_j p_j embed(j) at each latent,
  p the latent predictor's softmax (over its top_k codes if top_k) given the latents before
  (translate_codes with expected embeddings instead of the codes' own)."""

  def decode_fn(inputs):
    memory, memory_mask, codes, count = model.source_latents(inputs, 1, 0.0)
    x = model._latent_predictor_inputs(tf.pad(codes, [[0, 0], [1, 0]]))  # pylint: disable=protected-access
    y = model.latent_predictor(x, memory=memory, memory_padding_mask=memory_mask)
    logits = tf.cast(model.latent_logits(y), tf.float32)[:, :-1, : model.num_codes]
    logits /= temperature
    if top_k:
      kth = tf.math.top_k(logits, top_k).values[..., -1:]
      logits = tf.where(logits >= kth, logits, -1e9)
    embeddings = model.bottleneck.embed(tf.range(model.num_codes))  # [num_codes, H]
    z = tf.einsum("blk,kd->bld", tf.nn.softmax(logits), tf.cast(embeddings, tf.float32))
    latent_mask = tf.sequence_mask(count, tf.shape(codes)[1])
    ids = tf.argmax(
      model.decode_latents(z, latent_mask, memory, memory_mask), axis=-1, output_type=tf.int32
    )
    ids = tf.where(compression.upsample_mask(latent_mask, model.compress_steps), ids, PAD_ID)
    return latent_transformer.cut_at_eos(ids)

  return tf.function(decode_fn, input_signature=[tf.TensorSpec([None, None], tf.int32)])


def main(argv):
  del argv
  config_lib.register_everything()
  problem, model, path = trainer_lib.load_run(FLAGS.run_dir)
  if not hasattr(model, "predict_latents"):
    raise SystemExit(f"{FLAGS.run_dir!r} holds a {type(model).__name__}, not a latent model")
  sources, references = problem.sources_and_references(FLAGS.split, FLAGS.sentences)
  hypotheses = decode.translate(model, problem.vocab, sources, beam_size=1)
  encoded_sources = decode.encode_texts(problem.vocab, sources)
  encoded_references = decode.encode_texts(problem.vocab, references)

  counts = {"right": 0, "short": 0, "long": 0}
  positions = agree = 0
  groups = {
    "all latents equal": ([], []),
    "same count, some codes differ": ([], []),
    "wrong count": ([], []),
  }
  posteriors = []
  for i, (source, reference) in enumerate(zip(encoded_sources, encoded_references)):
    encoded, predicted, posterior = latent_pairs(model, source, reference)
    posteriors.append(posterior)
    n = min(len(encoded), len(predicted))
    positions += len(encoded)
    agree += int(np.sum(encoded[:n] == predicted[:n]))
    if len(predicted) == len(encoded):
      counts["right"] += 1
      group = (
        "all latents equal"
        if np.array_equal(encoded, predicted)
        else "same count, some codes differ"
      )
    else:
      counts["short" if len(predicted) < len(encoded) else "long"] += 1
      group = "wrong count"
    groups[group][0].append(hypotheses[i])
    groups[group][1].append(references[i])

  total = len(sources)
  print(f"{path}: {total} {FLAGS.split} sentences")
  print(f"BLEU (greedy latents): {metrics.corpus_bleu(hypotheses, references)[0]:.2f}")
  print(
    f"latent count right / too short / too long: {counts['right']} / {counts['short']} / "
    f"{counts['long']}"
  )
  print(
    f"positions where the predicted code is the encoder's: {agree} of {positions} "
    f"({agree / positions:.1%})"
  )
  if has_posterior(model.bottleneck):
    p = np.concatenate(posteriors).astype(np.float64)
    m = model.bottleneck.num_samples if model.bottleneck.mode == "soft_em" else 10
    entropy = -np.sum(p * np.log(np.maximum(p, 1e-300)), axis=1)
    distinct = np.sum(1.0 - (1.0 - p) ** m, axis=1)
    print(
      f"soft E-step posterior at the {len(p)} reference latents: entropy "
      f"{entropy.mean():.2f} nats, top-1 probability {p.max(axis=1).mean():.3f}; "
      f"of m = {m} draws, distinct codes {distinct.mean():.2f} (expected), all one code "
      f"with probability {np.sum(p**m, axis=1).mean():.3f}"
    )
  else:
    print(
      f"no soft E-step posterior: the bottleneck is a {type(model.bottleneck).__name__}, "
      "not a one-block VectorQuantizer"
    )
  print("| sentences | count | BLEU |\n|---|---|---|")
  for name, (hyps, refs) in groups.items():
    bleu = f"{metrics.corpus_bleu(hyps, refs)[0]:.2f}" if hyps else "-"
    print(f"| {name} | {len(hyps)} | {bleu} |")
  if FLAGS.soft_inputs:
    for name, top_k, temperature in SOFT_INPUTS:
      hyps = decode.translate(
        model, problem.vocab, sources, decode_fn=soft_input_decoder(model, top_k, temperature)
      )
      print(f"decoder input {name}: BLEU {metrics.corpus_bleu(hyps, references)[0]:.2f}")
  for beam in (int(b) for b in FLAGS.latent_beams):
    for alpha in (0.0, 0.6):
      hyps = decode.translate(model, problem.vocab, sources, beam_size=beam, alpha=alpha)
      print(
        f"latent beam {beam}, alpha {alpha}: BLEU {metrics.corpus_bleu(hyps, references)[0]:.2f}"
      )


if __name__ == "__main__":
  flags.mark_flag_as_required("run_dir")
  app.run(main)
