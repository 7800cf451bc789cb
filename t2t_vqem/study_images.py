"""A study's image rows (§5.2): test bits/dim and the Fig. 4 grid of every row, Table 2.

A row whose model serves images (registry.MODEL_INTERFACES "image":
image_vqvae_vq, image_vqvae_em) is not decoded for BLEU and latency. Once
trained, it is evaluated by its own Trainer restored at its last checkpoint:
`Trainer.write_test_results` writes rows/<name>/test_results.json, the test
split's lower bound on -log p(x) in bits/dim and its two parts (reconstruction
-log P(x | z) and latent prior -log P(z), the paper's
(l_r n_x + l_p n_z) / n_x log2 e), and that evaluation's pictures; the grid of
the first test pictures over their reconstructions (the paper's Fig. 4, as
many as Trainer.eval_pictures) is copied to OUTPUT_DIR/fig4_<name>.png. The
table (Table 2) gives each row's bits/dim, its parts and the paper's figure.
"""

import os

from absl import logging

from t2t_vqem import config
from t2t_vqem import constants
from t2t_vqem import files
from t2t_vqem import pipeline as pipeline_lib
from t2t_vqem import registry
from t2t_vqem.train import trainer as trainer_lib

_cell = pipeline_lib._cell
IMAGE_INTERFACE = "image"
FIG4 = "fig4_{name}.png"
RESULT_KEYS = (
  "bits_per_dim",
  "bits_per_dim_reconstruction",
  "bits_per_dim_prior",
  "usage",
  "perplexity",
  "prior_accuracy",
)


def serves_images(model_name):
  """Whether registered model `model_name` declares the image interface."""
  return getattr(registry.model(model_name), "interface", None) == IMAGE_INTERFACE


def rows_serve_images(models, has_teacher):
  """Whether a study's rows serve images, from {row name: Trainer.model}; all must agree,
  and image rows have no teacher (raises ValueError otherwise)."""
  kinds = {}
  for name, model in models.items():
    kinds.setdefault(serves_images(model), name)
  if len(kinds) > 1:
    raise ValueError(
      f"row {kinds[True]!r} serves images but row {kinds[False]!r} translates: a table's "
      "rows are all image models (bits/dim) or all translation models (BLEU, latency)"
    )
  images = next(iter(kinds))
  if images and has_teacher:
    raise ValueError(
      "the rows serve images but the study has a teacher (Study.teacher_gin / teacher_dir): "
      "image rows train on their problem's pictures; unset the teacher"
    )
  return images


def row_results(run_dir, items, path, data_dir=None):
  """`evaluate_row`'s results, cached in `path` (eval/<name>.json): evaluated again when
  it is absent or another run's."""
  if os.path.exists(path):
    cached = files.read_json(path)
    if cached["run_dir"] == os.path.abspath(run_dir):
      return cached
  logging.info("Evaluating %s on the test split", run_dir)
  result = evaluate_row(run_dir, items, data_dir)
  files.write_json(path, result)
  return result


def evaluate_row(run_dir, items, data_dir=None):
  """The test results of a trained image row, under its config `items`.

  Returns:
    {"run_dir", "test_results" (its path), "step", "n_s" (the soft EM draws,
    else None), "codebook_size", "latents" ("8x8x10"), "pictures" (the Fig. 4
    grid in run_dir, None without pictures), and RESULT_KEYS from test_results.json}.
  """
  with config.stage_config(items):
    trainer = trainer_lib.Trainer(run_dir, data_dir=data_dir)
    if not trainer.manager.latest_checkpoint:
      raise FileNotFoundError(f"row {run_dir!r} has no checkpoint: train it before evaluating")
    trainer.restore()
    written = trainer.write_test_results()
    if written is None:
      raise ValueError(
        f"row {run_dir!r}: problem {trainer.problem_name!r} reports no test results; an "
        "image row needs an image problem (image_shapes, image_cifar10)"
      )
    model, step = trainer.model, trainer.step
  path = os.path.join(run_dir, trainer_lib.TEST_RESULTS)
  test = files.read_json(path)
  bottleneck = model.bottleneck
  # Trainer.write_pictures' file of the test evaluation's originals over reconstructions.
  grid = os.path.join(run_dir, "pictures", f"reconstructions-{step}.png")
  return {
    "run_dir": os.path.abspath(run_dir),
    "test_results": os.path.abspath(path),
    "step": step,
    "n_s": bottleneck.num_samples if getattr(bottleneck, "mode", None) == "soft_em" else None,
    "codebook_size": int(model.num_codes),
    "latents": "x".join(str(n) for n in model.field_shape),
    "pictures": os.path.abspath(grid) if os.path.exists(grid) else None,
    **{key: test[key] for key in RESULT_KEYS if key in test},
  }


def copy_grid(row, output_dir, name):
  """Copies a row's Fig. 4 grid to output_dir/fig4_<name>.png; its file name, or None."""
  if not row.get("pictures") or not os.path.exists(row["pictures"]):
    return None
  file = FIG4.format(name=name)
  with open(row["pictures"], "rb") as f:
    files.write_bytes(os.path.join(output_dir, file), f.read())
  return file


def results_markdown(results):
  """The image rows as a Markdown table (the paper's Table 2), with its notes."""
  lines = [f"## {results['title']}", ""] if results.get("title") else []
  lines += [
    "| Model | n_s | codebook | latents | bits/dim | reconstruction | latent prior "
    "| paper bits/dim | codebook usage | Fig. 4 |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for row in results["rows"]:
    lines.append(
      f"| {row['model']} | {_cell(row['n_s'], 'd')} | {row['codebook_size']} | {row['latents']} "
      f"| {row['bits_per_dim']:.4f} | {row['bits_per_dim_reconstruction']:.4f} "
      f"| {row['bits_per_dim_prior']:.4f} | {_cell(row['paper'].get('bits_per_dim'), '.2f')} "
      f"| {_cell(row.get('usage'), '.3f')} | {row['fig4'] or '-'} |"
    )
  steps = sorted({row["step"] for row in results["rows"]})
  lines += [
    "",
    f"Bits/dim on the {constants.TEST} split of {results['problem']} at step "
    f"{', '.join(map(str, steps))} (each row's test_results.json): the lower bound on "
    "-log p(x) = -log P(x | z) - log P(z) per sub-pixel, the reconstruction part and the "
    "latent prior's part (§5.2); codebook usage: the fraction of the codes used in a test "
    "batch, averaged over the batches.",
    "Fig. 4: the first test pictures (top) over their reconstructions through the nearest "
    "codes (bottom), one file per row.",
    "The paper column is the paper's Table 2 (CIFAR-10 test set); on another problem or at "
    "another budget compare the ordering of the rows, not the values.",
  ]
  return "\n".join(lines) + "\n"
