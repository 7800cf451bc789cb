"""A study's figures (Figure 3) and image rows (Table 2, Fig. 4), at tiny sizes.

A tiny Figure 3 study (hard vs soft EM, evaluated every 2 steps) draws fig3.png
and a CSV holding exactly each row's dev evaluations; a tiny image study
evaluates every row on the test split (bits/dim = reconstruction + prior, as
in test_results.json) and copies its Fig. 4 grid; rerun, both skip their
trained rows and still draw.
"""

import csv
import json

import gin
from matplotlib import image
import numpy as np
import pytest

from t2t_vqem import config
from t2t_vqem import study as study_lib
from t2t_vqem import study_figures
from t2t_vqem import study_images
from t2t_vqem.train import trainer as trainer_lib

config.register_everything()

TRAIN_STEPS, EVAL_EVERY = 4, 2
PROBLEM = [
  "translate_grammar_ende.num_train = 120",
  "translate_grammar_ende.num_eval = 12",
  "translate_grammar_ende.vocab_size = 300",
]
TEXT_BUDGET = [
  "Trainer.problem = 'translate_grammar_ende'",
  "Trainer.batch_tokens = 256",
  f"Trainer.train_steps = {TRAIN_STEPS}",
  f"Trainer.eval_every = {EVAL_EVERY}",
  "Trainer.eval_bleu_examples = 2",
  "Trainer.checkpoint_every = 4",
  "Trainer.log_every = 2",
  "make_optimizer.warmup_steps = 2",
]


def latent(model, *bindings):
  sizes = dict(hidden_size=16, num_layers=1, num_heads=2, filter_size=32, dropout=0.0)
  sizes.update(compress_steps=2, mask_startup_steps=0, latent_loss_start_step=0)
  return (
    [f"Trainer.model = '{model}'"]
    + [f"{model}.{k} = {v!r}" for k, v in sizes.items()]
    + [*bindings]
  )


FIG3_ROWS = [
  {
    "name": "vq",
    "label": "hard EM",
    "gin": latent(
      "latent_transformer_vq",
      "hard_em.codebook_size = 64",
      "latent_transformer_vq.compress_attend_to_source = True",
    ),
  },
  {
    "name": "em",
    "label": "soft EM, n_s = 3",
    "gin": latent(
      "latent_transformer_em",
      "soft_em.codebook_size = 64",
      "soft_em.num_samples = 3",
      "latent_transformer_em.compress_attend_to_source = True",
    ),
  },
]
FIG3_FIGURES = [
  {"metric": "bleu_teacher_forced", "file": "fig3", "ylabel": "teacher-forced BLEU"},
  {"metric": "usage", "file": "fig3_usage"},
]
IMAGE_SIZES = dict(
  hidden_size=16,
  latents_per_position=2,
  latent_dim=8,
  prior_hidden_size=16,
  prior_layers=1,
  prior_heads=2,
  prior_filter_size=32,
  prior_block_length=16,
  prior_dropout=0.0,
)
IMAGE_BUDGET = [
  "Trainer.problem = 'image_shapes'",
  "Trainer.batch_size = 8",
  "Trainer.train_steps = 2",
  "Trainer.eval_every = 0",
  "Trainer.eval_pictures = 2",
  "Trainer.log_every = 1",
  "image_shapes.num_train = 40",
  "image_shapes.num_eval = 8",
  "hard_em.codebook_size = 16",
  "soft_em.codebook_size = 16",
  "soft_em.num_samples = 3",
  "make_optimizer.warmup_steps = 2",
]


def image_row(name, model, paper):
  sizes = [f"{model}.{k} = {v!r}" for k, v in IMAGE_SIZES.items()]
  return {"name": name, "gin": [f"Trainer.model = '{model}'"] + sizes, "paper": paper}


IMAGE_ROWS = [
  image_row("vq", "image_vqvae_vq", {"bits_per_dim": 4.83}),
  image_row("em", "image_vqvae_em", {"bits_per_dim": 4.80}),
]


def fig3_study(out, data_dir):
  return study_lib.Study(
    str(out),
    data_dir=data_dir,
    rows=FIG3_ROWS,
    row_gin=TEXT_BUDGET,
    shared_gin=PROBLEM,
    title="Tiny Figure 3",
    figures=FIG3_FIGURES,
    note="The paper: hard EM collapsed.",
    bleu_sentences=2,
    latency_sentences=1,
  )


def image_study(out, data_dir):
  return study_lib.Study(
    str(out),
    data_dir=data_dir,
    rows=IMAGE_ROWS,
    row_gin=IMAGE_BUDGET,
    title="Tiny Table 2",
    note="The paper's other rows.",
    evaluate_dev=False,
  )


@pytest.fixture(scope="module")
def fig3(tmp_path_factory):
  out = tmp_path_factory.mktemp("fig3")
  # test_study.py's data dir: the same problem (PROBLEM), so the same vocabulary.
  data_dir = str(tmp_path_factory.getbasetemp() / "study_data")
  return out, data_dir, fig3_study(out, data_dir).run()


@pytest.fixture(scope="module")
def table2(tmp_path_factory):
  out = tmp_path_factory.mktemp("table2")
  data_dir = str(tmp_path_factory.getbasetemp() / "table2_data")
  return out, data_dir, image_study(out, data_dir).run()


def teardown_function():
  gin.clear_config()


def read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def assert_drawn(path):
  """A PNG that decodes to a picture with a drawing on it (not only background)."""
  picture = image.imread(str(path))
  assert picture.ndim == 3 and picture.shape[0] > 100 and picture.shape[1] > 100
  background = np.all(picture[..., :3] > 0.99, axis=-1)  # white
  assert (~background).mean() > 0.01


def dev_history(out, metric):
  """[(step, row label, value)] of every row's dev evaluations, read from its
  eval_history.csv with csv alone."""
  values = []
  for row in FIG3_ROWS:
    history = read_csv(out / "rows" / row["name"] / "eval_history.csv")
    dev = [r for r in history if r["split"] == "dev"]
    assert [int(r["step"]) for r in dev] == list(range(EVAL_EVERY, TRAIN_STEPS + 1, EVAL_EVERY))
    values += [(int(r["step"]), row["label"], float(r[metric])) for r in dev]
  return values


def test_fig3_study_draws_each_rows_dev_history(fig3):
  out, _, results = fig3
  for row in FIG3_ROWS:
    assert (out / "rows" / row["name"] / "stage_done.json").exists()
  for figure in FIG3_FIGURES:
    assert_drawn(out / f"{figure['file']}.png")
    plotted = read_csv(out / f"{figure['file']}.csv")
    metric = figure["metric"]
    assert list(plotted[0]) == ["step", "label", metric]
    got = [(int(r["step"]), r["label"], float(r[metric])) for r in plotted]
    assert got == dev_history(out, metric)
  # results.json and results.md: the figures, each row's last and largest value, the note.
  saved = json.loads((out / "results.json").read_text())
  assert saved == json.loads(json.dumps(results))
  drawn = {d["file"]: d for d in saved["figures"]}
  assert sorted(drawn) == ["fig3", "fig3_usage"]
  assert drawn["fig3_usage"]["ylabel"] == "usage" and drawn["fig3"]["split"] == "dev"
  assert list(drawn["fig3"]["rows"]) == [row["label"] for row in FIG3_ROWS]
  for label, summary in drawn["fig3"]["rows"].items():
    values = {step: v for step, who, v in dev_history(out, "bleu_teacher_forced") if who == label}
    assert summary["last_step"] == TRAIN_STEPS and summary["last"] == values[TRAIN_STEPS]
    assert summary["max"] == max(values.values()) and values[summary["max_step"]] == summary["max"]
  table = (out / "results.md").read_text()
  assert table.startswith("## Tiny Figure 3\n")
  assert [r["model"] for r in saved["rows"]] == ["hard EM", "soft EM, n_s = 3"]
  assert (
    "- fig3.png (fig3.csv): teacher-forced BLEU (bleu_teacher_forced), dev evaluations" in table
  )
  assert "- fig3_usage.png (fig3_usage.csv): usage, dev evaluations" in table
  assert "| hard EM | " in table.split("Figures")[1]
  assert table.rstrip().endswith("The paper: hard EM collapsed.")


def test_image_study_tabulates_test_bits_per_dim_and_fig4(table2):
  out, _, results = table2
  saved = json.loads((out / "results.json").read_text())
  assert saved == json.loads(json.dumps(results)) and saved["images"]
  rows = saved["rows"]
  assert [r["name"] for r in rows] == ["vq", "em"]
  assert [r["n_s"] for r in rows] == [None, 3]
  assert [(r["codebook_size"], r["latents"]) for r in rows] == [(16, "8x8x2")] * 2
  for row in rows:
    test = json.loads((out / "rows" / row["name"] / "test_results.json").read_text())
    assert test["step"] == row["step"] == 2
    for key in ("bits_per_dim", "bits_per_dim_reconstruction", "bits_per_dim_prior"):
      assert row[key] == test[key]
    total = test["bits_per_dim_reconstruction"] + test["bits_per_dim_prior"]
    assert row["bits_per_dim"] == pytest.approx(total, rel=1e-5)
    # Fig. 4: 2 test pictures over their reconstructions, the test evaluation's grid.
    assert row["fig4"] == f"fig4_{row['name']}.png"
    fig4 = (out / row["fig4"]).read_bytes()
    assert fig4 == (out / "rows" / row["name"] / "pictures" / "reconstructions-2.png").read_bytes()
    assert image.imread(str(out / row["fig4"])).shape == (2 * 34 + 2, 2 * 34 + 2, 3)
  table = (out / "results.md").read_text()
  header = [c.strip() for c in table.split("\n")[2].strip("|").split("|")]
  assert header[4:8] == ["bits/dim", "reconstruction", "latent prior", "paper bits/dim"]
  cells = [c.strip() for c in table.split("\n")[5].strip("|").split("|")]
  em = rows[1]
  assert cells[:8] == [
    "em",
    "3",
    "16",
    "8x8x2",
    f"{em['bits_per_dim']:.4f}",
    f"{em['bits_per_dim_reconstruction']:.4f}",
    f"{em['bits_per_dim_prior']:.4f}",
    "4.80",
  ]
  assert cells[-1] == "fig4_em.png" and "The paper's other rows." in table


def test_rerun_skips_trained_rows_and_still_draws(fig3, table2, monkeypatch):
  trained, evaluated = [], []
  real_train, real_evaluate = trainer_lib.Trainer.train, study_images.evaluate_row
  monkeypatch.setattr(
    trainer_lib.Trainer, "train", lambda self: trained.append(self.output_dir) or real_train(self)
  )
  monkeypatch.setattr(
    study_images, "evaluate_row", lambda *a, **k: evaluated.append(a) or real_evaluate(*a, **k)
  )
  (fig3_out, fig3_data, _), (image_out, image_data, first) = fig3, table2
  for path in [fig3_out / "fig3.png", fig3_out / "fig3_usage.csv", image_out / "fig4_vq.png"]:
    path.unlink()
  fig3_study(fig3_out, fig3_data).run()
  again = image_study(image_out, image_data).run()
  assert trained == [] and evaluated == []
  assert_drawn(fig3_out / "fig3.png")
  assert (fig3_out / "fig3_usage.csv").exists() and (image_out / "fig4_vq.png").exists()
  assert json.loads(json.dumps(again))["rows"] == json.loads(json.dumps(first))["rows"]


def test_figures_are_checked(fig3):
  out, _, _ = fig3
  with pytest.raises(ValueError, match="at least 'metric'"):
    study_figures.check_figures([{"file": "fig3"}])
  with pytest.raises(ValueError, match="unknown keys"):
    study_figures.check_figures([{"metric": "usage", "png": "x"}])
  with pytest.raises(ValueError, match="not a file name"):
    study_figures.check_figures([{"metric": "usage", "file": "../fig3"}])
  with pytest.raises(ValueError, match="is taken"):
    study_figures.check_figures([{"metric": "usage"}, {"metric": "usage"}])
  assert study_figures.check_figures([{"metric": "usage"}]) == [
    {"metric": "usage", "file": "usage", "ylabel": "usage", "title": None, "split": "dev"}
  ]
  figures = study_figures.check_figures([{"metric": "nope", "file": "x"}])
  with pytest.raises(ValueError, match=r"Study.figures\[0\] \(x.png\).*has no 'nope'"):
    study_figures.draw(figures, {"hard EM": str(out / "rows" / "vq")}, str(out))
  rows = [{"name": "a", "label": "EM"}, {"name": "b", "label": "EM"}, {"name": "c", "label": "VQ"}]
  assert study_figures.line_labels(rows) == {"a": "EM (a)", "b": "EM (b)", "c": "VQ"}


def test_image_and_translation_rows_do_not_mix():
  with pytest.raises(ValueError, match="serves images but row 'text' translates"):
    study_images.rows_serve_images(
      {"text": "latent_transformer_vq", "img": "image_vqvae_em"}, False
    )
  with pytest.raises(ValueError, match="has a teacher"):
    study_images.rows_serve_images({"img": "image_vqvae_em"}, True)
  assert study_images.rows_serve_images({"img": "image_vqvae_em"}, False)
  assert not study_images.rows_serve_images({"text": "transformer"}, False)
