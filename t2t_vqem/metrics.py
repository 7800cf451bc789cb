"""Evaluation metrics: corpus BLEU through sacrebleu's BLEU() API; bits/dim of images."""

import math

import sacrebleu


def corpus_bleu(hypotheses, references):
  """sacrebleu corpus BLEU of detokenized hypotheses against one reference each.

  Returns:
    (score, signature): the BLEU score (0-100) and sacrebleu's signature string,
    to be reported with every number.
  """
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references; "
                     "give exactly one hypothesis per reference")
  bleu = sacrebleu.metrics.BLEU()
  score = bleu.corpus_score(list(hypotheses), [list(references)])
  return score.score, str(bleu.get_signature())


def bits_per_dim(reconstruction_nats, prior_nats, num_dims, num_latents):
  """The paper's §5.2 lower bound on -log p(x), in bits per dimension.

  (l_r * n_x + l_p * n_z) / n_x * log2(e), where l_r is the mean reconstruction
  loss -log P(x | z) per sub-pixel and l_p the mean latent-prior loss -log p(z)
  per latent, both in nats; n_x = 32*32*3 and n_z = 8*8*10 in the paper.
  """
  return (reconstruction_nats * num_dims + prior_nats * num_latents) / num_dims / math.log(2.0)
