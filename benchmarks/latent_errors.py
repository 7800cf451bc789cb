"""Benchmark: where a latent model's predicted latents differ from its target encoder's.

For the first --sentences pairs of a split, a trained latent_transformer run gives two latent
sequences per sentence: the target encoder's on the reference (the hard E step, Eq. 1: the
nearest codes, also in soft EM) and the latent predictor's, decoded greedily from the source.
Prints how often the predicted latent count is right, too short or too long, how many
positions agree, and the BLEU of the translations grouped by: all latents equal / same
count, some codes differ / wrong count. With --latent_beams, the BLEU of decoding with beam
search over the latents (alpha 0 and 0.6). Nothing is trained; no timing.

  python benchmarks/latent_errors.py --run_dir=/tmp/distill_big10k/student --sentences=500
"""

import os
import sys

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from t2t_vqem import decode, metrics  # noqa: E402
from t2t_vqem.cli import common  # noqa: E402
from t2t_vqem.train import trainer as trainer_lib  # noqa: E402

flags.DEFINE_string("run_dir", None, "A latent_transformer_* training run (its output_dir).")
flags.DEFINE_string("split", "test", "Split whose first --sentences pairs are read.")
flags.DEFINE_integer("sentences", 500, "Sentence pairs.")
flags.DEFINE_list("latent_beams", [], "Beam sizes over the latents to score, e.g. 2,4.")
FLAGS = flags.FLAGS


def latent_pairs(model, source, reference):
  """(the target encoder's nearest codes, the predictor's greedy codes) of one pair."""
  inputs, targets = tf.constant([source]), tf.constant([reference])
  memory, memory_mask = model.encode_source(inputs)
  z_e, latent_mask = model.encode_target(targets, memory, memory_mask)
  encoded = model.bottleneck.nearest(z_e).numpy()[0][:int(latent_mask.numpy().sum())]
  factor = model.compression_factor
  max_latents = (len(source) + model.max_decode_extra + factor - 1) // factor
  codes, count = model.predict_latents(memory, memory_mask, max_latents, 1, 0.0)
  return encoded, codes.numpy()[0][:int(count.numpy()[0])]


def main(argv):
  del argv
  common.register_everything([])
  common.parse_run_config(FLAGS.run_dir, [], [])
  problem, model, path = trainer_lib.load_run(FLAGS.run_dir)
  if not hasattr(model, "predict_latents"):
    raise SystemExit(f"{FLAGS.run_dir!r} holds a {type(model).__name__}, not a latent model")
  sources, references = problem.sources_and_references(FLAGS.split, FLAGS.sentences)
  hypotheses = decode.translate(model, problem.vocab, sources, beam_size=1)
  encoded_sources = decode.encode_texts(problem.vocab, sources)
  encoded_references = decode.encode_texts(problem.vocab, references)

  counts = {"right": 0, "short": 0, "long": 0}
  positions = agree = 0
  groups = {"all latents equal": ([], []), "same count, some codes differ": ([], []),
            "wrong count": ([], [])}
  for i, (source, reference) in enumerate(zip(encoded_sources, encoded_references)):
    encoded, predicted = latent_pairs(model, source, reference)
    n = min(len(encoded), len(predicted))
    positions += len(encoded)
    agree += int(np.sum(encoded[:n] == predicted[:n]))
    if len(predicted) == len(encoded):
      counts["right"] += 1
      group = ("all latents equal" if np.array_equal(encoded, predicted)
               else "same count, some codes differ")
    else:
      counts["short" if len(predicted) < len(encoded) else "long"] += 1
      group = "wrong count"
    groups[group][0].append(hypotheses[i])
    groups[group][1].append(references[i])

  total = len(sources)
  print(f"{path}: {total} {FLAGS.split} sentences")
  print(f"BLEU (greedy latents): {metrics.corpus_bleu(hypotheses, references)[0]:.2f}")
  print(f"latent count right / too short / too long: {counts['right']} / {counts['short']} / "
        f"{counts['long']}")
  print(f"positions where the predicted code is the encoder's: {agree} of {positions} "
        f"({agree / positions:.1%})")
  print("| sentences | count | BLEU |\n|---|---|---|")
  for name, (hyps, refs) in groups.items():
    bleu = f"{metrics.corpus_bleu(hyps, refs)[0]:.2f}" if hyps else "-"
    print(f"| {name} | {len(hyps)} | {bleu} |")
  for beam in (int(b) for b in FLAGS.latent_beams):
    for alpha in (0.0, 0.6):
      hyps = decode.translate(model, problem.vocab, sources, beam_size=beam, alpha=alpha)
      print(f"latent beam {beam}, alpha {alpha}: BLEU "
            f"{metrics.corpus_bleu(hyps, references)[0]:.2f}")


if __name__ == "__main__":
  flags.mark_flag_as_required("run_dir")
  app.run(main)
