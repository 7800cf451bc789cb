"""Evaluation metrics: corpus BLEU through sacrebleu's BLEU() API.

Images' bits/dim are a model metric: see t2t_vqem.models.image_vqvae.
"""

import sacrebleu


def corpus_bleu(hypotheses, references):
  """sacrebleu corpus BLEU of detokenized hypotheses against one reference each.

  Returns:
    (score, signature): the BLEU score (0-100) and sacrebleu's signature string,
    to be reported with every number.
  """
  if len(hypotheses) != len(references):
    raise ValueError(
      f"{len(hypotheses)} hypotheses for {len(references)} references; "
      "give exactly one hypothesis per reference"
    )
  bleu = sacrebleu.metrics.BLEU()
  score = bleu.corpus_score(list(hypotheses), [list(references)])
  return score.score, str(bleu.get_signature())
