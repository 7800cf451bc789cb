"""The Study (one teacher, many students, one table) and the shipped paper_table*.gin.

A tiny study trains every row (gold and distilled targets, a semantic hashing
row among the VQ ones) and writes its table beside the paper's figures; a
resumed study retrains and re-decodes only the row whose results were deleted;
every shipped table config names registered models, problems and bottlenecks,
with the rows and figures of the paper's table.
"""

import json
import shutil

from absl import flags
from absl.testing import flagsaver
import gin
import numpy as np
import pytest
import sacrebleu
import tensorflow as tf

from t2t_vqem import config
from t2t_vqem import registry
from t2t_vqem import study as study_lib
from t2t_vqem import study_figures
from t2t_vqem import study_images
from t2t_vqem import study_seeds
from t2t_vqem.cli import trainer as trainer_cli
from t2t_vqem.problems import grammar
from t2t_vqem.train import trainer as trainer_lib

config.register_everything()

NUM_TRAIN = 120
BLEU_SENTENCES = 6
PROBLEM = [
  "translate_grammar_ende.num_train = 120",
  "translate_grammar_ende.num_eval = 12",
  "translate_grammar_ende.vocab_size = 300",
]
TINY = [
  "Trainer.problem = 'translate_grammar_ende'",
  "Trainer.batch_tokens = 256",
  "Trainer.eval_every = 0",
  "Trainer.eval_bleu_examples = 0",
  "Trainer.log_every = 10",
  "make_optimizer.warmup_steps = 2",
]
TEACHER = TINY + [
  "Trainer.model = 'transformer'",
  "Trainer.train_steps = 60",
  "make_optimizer.learning_rate = 0.02",
  "make_optimizer.warmup_steps = 10",
  "transformer.hidden_size = 16",
  "transformer.num_layers = 1",
  "transformer.num_heads = 2",
  "transformer.filter_size = 32",
  "transformer.dropout = 0.0",
  "transformer.max_decode_extra = 4",
]


def latent(model, *bindings):
  return TINY + [
    f"Trainer.model = '{model}'",
    f"{model}.hidden_size = 16",
    f"{model}.num_layers = 1",
    f"{model}.num_heads = 2",
    f"{model}.filter_size = 32",
    f"{model}.dropout = 0.0",
    f"{model}.compress_steps = 2",
    f"{model}.mask_startup_steps = 0",
    f"{model}.latent_loss_start_step = 0",
    *bindings,
  ]


# A row on the gold targets with a non-EM bottleneck, one on the distilled targets.
ROWS = [
  {
    "name": "semhash",
    "label": "LT + Semhash",
    "gin": latent(
      "latent_transformer_vq",
      "latent_transformer_vq.bottleneck = 'semhash'",
      "semhash.num_bits = 4",
      "semhash.startup_steps = 1",
    ),
    "paper": {"bleu": 19.8, "latency_ms": 105, "speedup": 3.15},
  },
  {
    "name": "em_distill",
    "label": "VQ-VAE with EM + distillation",
    "distilled": True,
    "gin": latent("latent_transformer_em", "soft_em.codebook_size = 16", "soft_em.num_samples = 3"),
    "paper": {"bleu": 26.7},
  },
]
# The seeded study's row: any row is trained once per seed; a Transformer as small as
# the teacher takes a third of a latent row's time to trace.
SMALL = {
  "name": "small",
  "label": "Small Transformer",
  "gin": TINY
  + ["Trainer.model = 'transformer'"]
  + [line for line in TEACHER if line.startswith("transformer.")],
}
TEACHER_PAPER = {"beam": {"bleu": 28.1, "latency_ms": 331}, "greedy": {"bleu": 27.0}}
ROW_NAMES = ["teacher_greedy", "teacher_beam4", "semhash", "em_distill"]


def make_study(out, data_dir, **kwargs):
  return study_lib.Study(
    str(out),
    data_dir=data_dir,
    rows=ROWS,
    row_gin=["Trainer.train_steps = 3"],
    teacher_gin=TEACHER,
    teacher_paper=TEACHER_PAPER,
    title="Tiny table",
    shared_gin=PROBLEM,
    distill_batch_size=64,
    distill_shard_size=100,
    bleu_sentences=BLEU_SENTENCES,
    latency_sentences=2,
    evaluate_dev=False,
    **kwargs,
  )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A tiny study run to its end: (output_dir, data_dir, its results)."""
  out = tmp_path_factory.mktemp("study")
  data_dir = str(tmp_path_factory.getbasetemp() / "study_data")
  return out, data_dir, make_study(out, data_dir).run()


def teardown_function():
  gin.clear_config()


def gold_test():
  return grammar.generate_pairs("test", seed=1234, num_train=NUM_TRAIN, num_eval=12)[
    :BLEU_SENTENCES
  ]


def test_every_row_is_trained_evaluated_and_tabulated(finished):
  out, _, results = finished
  saved = json.loads((out / "results.json").read_text())
  assert saved == json.loads(json.dumps(results))
  rows = saved["rows"]
  assert [row["name"] for row in rows] == ROW_NAMES
  assert [row["model"] for row in rows] == ["Transformer (greedy)", "Transformer (beam 4)"] + [
    row["label"] for row in ROWS
  ]
  # Each student trained in rows/<name>/ on its own targets: gold or the teacher's.
  for row in ROWS:
    run_info = json.loads((out / "rows" / row["name"] / "run_info.json").read_text())
    distilled = row.get("distilled", False)
    assert run_info["problem"] == ("translate_distilled" if distilled else "translate_grammar_ende")
    assert (out / "rows" / row["name"] / "stage_done.json").exists()
  assert "semhash.num_bits = 4" in (out / "rows" / "semhash" / "operative_config.gin").read_text()
  operative = (out / "rows" / "em_distill" / "operative_config.gin").read_text()
  operative = " ".join(operative.replace("\\\n", " ").split())  # Gin wraps long lines
  assert f"translate_distilled.distill_dir = '{out / 'distill'}'" in operative
  assert json.loads((out / "distill" / "info.json").read_text())["num_sources"] == NUM_TRAIN
  assert [(r["n_c"], r["n_s"]) for r in rows] == [(None, None)] * 2 + [(2, None), (2, 3)]
  assert [r["distilled"] for r in rows] == [False, False, False, True]
  # BLEU: sacrebleu's corpus BLEU of each row's outputs against the gold test targets.
  references = [t for _, t in gold_test()]
  for row in rows:
    lines = (out / "eval" / f"{row['name']}.hyp.txt").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == BLEU_SENTENCES + 1
    bleu = sacrebleu.corpus_bleu(lines[:-1], [references]).score
    assert row["bleu"] == pytest.approx(bleu, rel=1e-9, abs=1e-12)
    assert row["bleu_sentences"] == BLEU_SENTENCES
  assert max(row["bleu"] for row in rows) > 0.0  # some words right: the references matter
  # Latencies: eval/latency.json's medians; speedups are ratios of them.
  latency = json.loads((out / "eval" / "latency.json").read_text())
  assert sorted(latency) == sorted(ROW_NAMES)
  greedy, beam = latency["teacher_greedy"]["latency_ms"], latency["teacher_beam4"]["latency_ms"]
  for row in rows:
    ms = latency[row["name"]]["latency_ms"]
    assert row["latency_ms"] == ms > 0 and row["latency_sentences"] == 2
    assert row["speedup_vs_greedy"] == pytest.approx(greedy / ms)
    assert row["speedup_vs_beam"] == pytest.approx(beam / ms)
  # The table: our figures beside the paper's, with its notes.
  table = (out / "results.md").read_text()
  assert table.startswith("## Tiny table\n")
  header = [c.strip() for c in table.split("\n")[2].strip("|").split("|")]
  assert header == [
    "Model",
    "n_c",
    "n_s",
    "BLEU",
    "paper BLEU",
    "Latency (ms)",
    "paper latency (ms)",
    "Speedup vs greedy",
    "Speedup vs beam 4",
    "paper speedup",
  ]
  lines = {line.split("|")[1].strip(): line for line in table.split("\n") if line.startswith("| ")}
  cells = [c.strip() for c in lines["LT + Semhash"].strip("|").split("|")]
  semhash = rows[2]
  assert cells == [
    "LT + Semhash",
    "2",
    "-",
    f"{semhash['bleu']:.2f}",
    "19.8",
    f"{semhash['latency_ms']:.1f}",
    "105",
    f"{greedy / semhash['latency_ms']:.2f}x",
    f"{beam / semhash['latency_ms']:.2f}x",
    "3.15x",
  ]
  beam_cells = [c.strip() for c in lines["Transformer (beam 4)"].strip("|").split("|")]
  assert beam_cells[4:7:2] == ["28.1", "331"] and beam_cells[9] == "-"
  assert "(6 sentences), sacrebleu" in table and "not for their values" in table
  assert "(teacher step 60, sequence-level distillation): VQ-VAE with EM + distillation." in table


def test_resumed_study_redoes_only_the_deleted_row(finished, monkeypatch):
  out, data_dir, first = finished
  trained, real_train = [], trainer_lib.Trainer.train
  monkeypatch.setattr(
    trainer_lib.Trainer, "train", lambda self: trained.append(self.output_dir) or real_train(self)
  )

  def mtimes():
    files = [out / "rows" / r["name"] / "stage_done.json" for r in ROWS]
    files += [out / "eval" / f"{name}.json" for name in ROW_NAMES + ["latency"]]
    return {f.relative_to(out).as_posix(): f.stat().st_mtime_ns for f in files}

  # Nothing deleted: nothing trained, decoded or timed again; the same table.
  before = mtimes()
  again = make_study(out, data_dir).run()
  assert trained == [] and mtimes() == before
  assert json.loads(json.dumps(again))["rows"] == json.loads(json.dumps(first))["rows"]

  # One row's results deleted: only that row is trained and decoded again; the
  # latencies of all rows are timed again, side by side.
  shutil.rmtree(out / "rows" / "em_distill")
  results = make_study(out, data_dir).run()
  assert trained == [str(out / "rows" / "em_distill")]
  after = mtimes()
  changed = sorted(k for k in after if after[k] != before[k])
  assert changed == [
    "eval/em_distill.json",
    "eval/latency.json",
    "rows/em_distill/stage_done.json",
  ]
  assert [row["name"] for row in results["rows"]] == ROW_NAMES
  latency = json.loads((out / "eval" / "latency.json").read_text())
  for row in results["rows"]:
    assert row["latency_ms"] == latency[row["name"]]["latency_ms"]

  # A row's results made from another checkpoint than its run's newest (as when the
  # row was trained on): only that row is decoded again, and all are timed again.
  path = out / "eval" / "em_distill.json"
  path.write_text(json.dumps(dict(json.loads(path.read_text()), checkpoint="ckpt-older")))
  before = mtimes()
  make_study(out, data_dir).run()
  after = mtimes()
  assert sorted(k for k in after if after[k] != before[k]) == [
    "eval/em_distill.json",
    "eval/latency.json",
  ]
  assert json.loads(path.read_text())["checkpoint"] != "ckpt-older"


def test_seeded_study_trains_each_row_once_per_seed_and_gives_its_spread(finished, tmp_path):
  out, data_dir, _ = finished
  study = study_lib.Study(
    str(tmp_path),
    data_dir=data_dir,
    rows=[SMALL],
    row_gin=["Trainer.train_steps = 3"],
    teacher_dir=str(out / "teacher"),
    shared_gin=PROBLEM,
    bleu_sentences=BLEU_SENTENCES,
    latency_sentences=2,
    evaluate_dev=False,
    seeds=[1, 2],
  )
  results = study.run()
  names = [row["name"] for row in results["rows"]]
  assert names == ["teacher_greedy", "teacher_beam4", "small", "small.seed2"]
  weights = []
  for name, seed in (("small", 1), ("small.seed2", 2)):
    run = tmp_path / "rows" / name
    assert f"Trainer.seed = {seed}\n" in (run / "operative_config.gin").read_text()
    reader = tf.train.load_checkpoint(str(run / "checkpoints"))
    key = sorted(k for k in reader.get_variable_to_shape_map() if "embedding" in k.lower())[0]
    weights.append(reader.get_tensor(key))
  assert weights[0].shape == weights[1].shape and not np.allclose(weights[0], weights[1])
  bleu = [row["bleu"] for row in results["rows"][2:]]
  [spread] = results["seeds"]
  assert (spread["name"], spread["label"], spread["seeds"]) == (
    "small",
    "Small Transformer",
    [1, 2],
  )
  assert spread["bleu"] == bleu
  assert spread["mean"] == pytest.approx(np.mean(bleu))
  assert (spread["min"], spread["max"]) == (min(bleu), max(bleu))
  table = (tmp_path / "results.md").read_text()
  assert "Over the seeds 1, 2" in table
  assert f"| Small Transformer (small) | {np.mean(bleu):.2f} |" in table


def test_seeds_are_checked():
  for seeds in ([], [1, 1], ["1"]):
    with pytest.raises(ValueError, match="Study.seeds"):
      study_seeds.check_seeds(seeds)
  rows = study_lib.check_rows([{"name": "a", "gin": []}, {"name": "a.seed2", "gin": []}])
  with pytest.raises(ValueError, match="also the name"):
    study_seeds.expand(rows, [1, 2])


def test_rows_are_checked():
  with pytest.raises(ValueError, match="unknown keys"):
    study_lib.check_rows([{"name": "a", "gin": [], "n_s": 3}])
  with pytest.raises(ValueError, match="is taken"):
    study_lib.check_rows([{"name": "a", "gin": []}, {"name": "a", "gin": []}])
  with pytest.raises(ValueError, match="is taken"):
    study_lib.check_rows([{"name": "teacher_greedy", "gin": []}], reserved=["teacher_greedy"])
  with pytest.raises(ValueError, match="not a folder name"):
    study_lib.check_rows([{"name": "../a", "gin": []}])
  with pytest.raises(ValueError, match="keys among"):
    study_lib.check_rows([{"name": "a", "gin": [], "paper": {"BLEU": 1}}])
  with pytest.raises(ValueError, match="no teacher"):
    study_lib.Study("/nonexistent", rows=[{"name": "a", "gin": [], "distilled": True}])
  with pytest.raises(ValueError, match="only for a distilled row"):
    study_lib.check_rows([{"name": "a", "gin": [], "warm_start": True}])
  assert study_lib.check_rows([{"name": "a", "gin": ["x.gin"]}]) == [
    {
      "name": "a",
      "label": "a",
      "gin": ["x.gin"],
      "distilled": False,
      "paper": {},
      "warm_start": None,
    }
  ]


def test_trainer_runs_a_study_when_the_config_binds_study_rows(monkeypatch, tmp_path):
  calls = []

  class Recorder:
    def __init__(self, output_dir, data_dir=None):
      calls.append((output_dir, data_dir))

    def run(self):
      calls.append(gin.query_parameter("Study.rows")[0]["name"])

  monkeypatch.setattr(study_lib, "Study", Recorder)
  was_parsed = flags.FLAGS.is_parsed()
  try:
    with flagsaver.flagsaver():
      flags.FLAGS(
        [
          "t2t_vqem-trainer",
          "--gin_file=paper_table1_quickstart.gin",
          f"--output_dir={tmp_path}",
          "--data_dir=DATA",
        ]
      )
      trainer_cli.main(["t2t_vqem-trainer"])
  finally:
    if not was_parsed:
      flags.FLAGS.unparse_flags()
    gin.clear_config()
  assert calls == [(str(tmp_path), "DATA"), "lt_semhash"]


# -- the shipped table configs ----------------------------------------------------

# The paper's rows: (name, bottleneck, n_c, n_s or codebook size or hidden size,
# distilled, paper BLEU); Table 1 and §5.1.1, Tables 3-5 of the appendix.
TABLES = {
  "paper_table1": [
    ("lt_semhash", "semhash", 3, None, False, 19.8),
    ("vq", "hard_em", 3, None, False, 21.4),
    ("em_ns5", "soft_em", 3, 5, False, 22.4),
    ("vq_distill", "hard_em", 3, None, True, 26.4),
    ("em_ns10_distill", "soft_em", 3, 10, True, 26.7),
    ("em_nc4_ns10_distill", "soft_em", 4, 10, True, 25.4),
    ("gumbel_distill", "gumbel_softmax", 3, None, True, 23.2),
    ("semhash_distill", "semhash", 3, None, True, 24.1),
  ],
  "paper_table3": [
    (f"vq_k{k}", "hard_em", 3, 2**k, False, bleu)
    for k, bleu in ((10, 20.8), (12, 21.6), (14, 21.0), (16, 21.8))
  ],
  "paper_table4": [
    (f"vq_nc{nc}_distill" if ns is None else f"em_nc{nc}_ns{ns}_distill", bn, nc, ns, True, bleu)
    for nc, ns, bn, bleu in (
      (3, None, "hard_em", 26.4),
      (3, 5, "soft_em", 26.4),
      (3, 10, "soft_em", 26.7),
      (3, 25, "soft_em", 26.6),
      (3, 50, "soft_em", 26.5),
      (4, None, "hard_em", 22.4),
      (4, 5, "soft_em", 22.3),
      (4, 10, "soft_em", 25.4),
      (4, 25, "soft_em", 25.1),
      (4, 50, "soft_em", 23.6),
    )
  ],
  "paper_table5": [
    (f"vq_h{h}_distill" if ns is None else f"em_h{h}_ns{ns}_distill", bn, 3, (h, ns), True, bleu)
    for h, ns, bn, bleu in (
      (256, None, "hard_em", 24.5),
      (256, 10, "soft_em", 21.9),
      (256, 25, "soft_em", 25.8),
      (384, None, "hard_em", 25.6),
      (384, 10, "soft_em", 22.2),
      (384, 25, "soft_em", 26.2),
    )
  ],
}
QUICKSTART_SCALE = {"paper_table3": 16, "paper_table5": 4}  # codebook / 16, hidden 512 -> 128


def _bound(name, default=None):
  try:
    return gin.query_parameter(name)
  except ValueError:
    return default


def _describe(row, study):
  """(model, problem, bottleneck, n_c, n_s, codebook size, hidden size) of a row's config."""
  with config.stage_config(row["gin"] + study["row_gin"] + study["shared_gin"]):
    model, problem = gin.query_parameter("Trainer.model"), gin.query_parameter("Trainer.problem")
    registry.model(model)
    registry.problem(problem)
    bottleneck = _bound(f"{model}.bottleneck") or registry.model(model).default_bottleneck
    registry.bottleneck(bottleneck)
    size = _bound(f"{bottleneck}.codebook_size")
    if bottleneck == "semhash":
      size = 2 ** _bound("semhash.num_bits", 12)
    n_s = _bound("soft_em.num_samples") if bottleneck == "soft_em" else None
    return (
      model,
      problem,
      bottleneck,
      _bound(f"{model}.compress_steps"),
      n_s,
      size,
      _bound(f"{model}.hidden_size"),
    )


@pytest.mark.parametrize("quickstart", [False, True], ids=["paper", "quickstart"])
@pytest.mark.parametrize("table", sorted(TABLES))
def test_shipped_table_config_has_the_papers_rows(table, quickstart):
  name = table + ("_quickstart" if quickstart else "") + ".gin"
  gin.clear_config()
  config.parse_gin([name], [], finalize=False)
  assert study_lib.is_configured()
  study = {
    key: list(_bound(f"Study.{key}", []))
    for key in ("rows", "row_gin", "shared_gin", "teacher_gin")
  }
  rows = study_lib.check_rows(study["rows"], ["teacher_greedy", "teacher_beam4", "latency"])
  expected = TABLES[table]
  assert [r["name"] for r in rows] == [e[0] for e in expected]
  assert [(r["distilled"], r["paper"]["bleu"]) for r in rows] == [(e[4], e[5]) for e in expected]
  problem = "translate_grammar_ende" if quickstart else "translate_ende_wmt"
  if study["teacher_gin"]:
    with config.stage_config(study["teacher_gin"] + study["shared_gin"]):
      assert gin.query_parameter("Trainer.model") == "transformer"
      assert gin.query_parameter("Trainer.problem") == problem
    assert gin.query_parameter("Study.distill_beam_size") == 4
    assert gin.query_parameter("Study.teacher_paper")["beam"]["bleu"] == 28.1
  else:
    assert not any(r["distilled"] for r in rows)
  for row, (_, bottleneck, n_c, extra, _, _) in zip(rows, expected):
    model, row_problem, bn, nc, ns, size, hidden = _describe(row, study)
    assert (row_problem, bn, nc) == (problem, bottleneck, n_c), row["name"]
    assert model == ("latent_transformer_em" if bn == "soft_em" else "latent_transformer_vq")
    scale = QUICKSTART_SCALE.get(table, 1) if quickstart else 1
    if table == "paper_table3":
      assert size == extra // scale
    elif table == "paper_table5":
      assert (hidden, ns) == (extra[0] // scale, extra[1])
    else:
      assert ns == extra
      if not quickstart:
        assert hidden == 512
        if bn in ("hard_em", "soft_em", "gumbel_softmax"):
          assert size == 2**12
  gin.clear_config()


def _parse_shipped(name):
  gin.clear_config()
  config.parse_gin([name], [], finalize=False)
  assert study_lib.is_configured()
  study = {key: list(_bound(f"Study.{key}", [])) for key in ("rows", "row_gin", "shared_gin")}
  assert not _bound("Study.teacher_gin") and not _bound("Study.teacher_dir")
  return study, study_lib.check_rows(study["rows"], ["latency"])


@pytest.mark.parametrize("quickstart", [False, True], ids=["paper", "quickstart"])
def test_shipped_fig3_config_has_the_papers_runs_and_figures(quickstart):
  """Figure 3: hard EM vs soft EM n_s 5, 10 at 2^14 codes, the target encoder attending to
  the source, on gold targets, evaluated (with BLEU) during training."""
  study, rows = _parse_shipped("paper_fig3" + ("_quickstart" if quickstart else "") + ".gin")
  assert [(r["name"], r["distilled"]) for r in rows] == [
    ("vq", False),
    ("em_ns5", False),
    ("em_ns10", False),
  ]
  problem = "translate_grammar_ende" if quickstart else "translate_ende_wmt"
  expected = [("hard_em", None), ("soft_em", 5), ("soft_em", 10)]
  for row, (bottleneck, n_s) in zip(rows, expected):
    model, row_problem, bn, nc, ns, size, hidden = _describe(row, study)
    assert (row_problem, bn, ns, size, nc) == (problem, bottleneck, n_s, 2**14, 3), row["name"]
    assert hidden == (128 if quickstart else 512)
    with config.stage_config(row["gin"] + study["row_gin"] + study["shared_gin"]):
      assert gin.query_parameter(f"{model}.compress_attend_to_source") is True
      assert gin.query_parameter("Trainer.eval_every") > 0
      assert gin.query_parameter("Trainer.eval_bleu_examples") > 0
      steps = gin.query_parameter("Trainer.train_steps")
      assert steps // gin.query_parameter("Trainer.eval_every") >= 10  # points per line
  figures = study_figures.check_figures(gin.query_parameter("Study.figures"))
  assert [(f["file"], f["metric"], f["split"]) for f in figures] == [
    ("fig3", "bleu_teacher_forced", "dev"),
    ("fig3_usage", "usage", "dev"),
    ("fig3_perplexity", "perplexity", "dev"),
  ]
  note = gin.query_parameter("Study.note")
  assert "collapsed" in note and "test set" in note and "dev" in note
  gin.clear_config()


@pytest.mark.parametrize("quickstart", [False, True], ids=["paper", "quickstart"])
def test_shipped_table2_config_has_the_papers_rows(quickstart):
  """Table 2: VQ-VAE (hard EM) and EM (n_s 5), 2^8 codes, 8x8x10 latents, the paper's
  bits/dim, its reference rows in the note."""
  study, rows = _parse_shipped("paper_table2" + ("_quickstart" if quickstart else "") + ".gin")
  assert [(r["name"], r["distilled"], r["paper"]) for r in rows] == [
    ("vq", False, {"bits_per_dim": 4.83}),
    ("em_ns5", False, {"bits_per_dim": 4.80}),
  ]
  problem = "image_shapes" if quickstart else "image_cifar10"
  for row, (model, bottleneck, n_s) in zip(
    rows, [("image_vqvae_vq", "hard_em", None), ("image_vqvae_em", "soft_em", 5)]
  ):
    got = _describe(row, study)
    assert (got[0], got[1], got[2], got[4], got[5]) == (model, problem, bottleneck, n_s, 256)
    assert study_images.serves_images(model)
    with config.stage_config(row["gin"] + study["row_gin"] + study["shared_gin"]):
      assert _bound(f"{model}.latents_per_position") == 10
      assert _bound(f"{model}.compress_steps", 2) == 2  # 32x32 -> an 8x8 field
      assert gin.query_parameter("Trainer.eval_pictures") > 0  # the Fig. 4 grid
  note = gin.query_parameter("Study.note")
  for figure in ("ImageTransformer 2.92", "VAE 4.51", "4.67", "4.83", "4.80"):
    assert figure in note
  gin.clear_config()
