"""Evaluation history and its line plots (Figure 3).

Every Trainer.evaluate puts one row into OUTPUT_DIR/eval_history.csv at the steps
that train_steps and eval_every give, equal to what evaluate returned and to its
TensorBoard summaries; a run killed after evaluating past its checkpoint drops
those rows on resuming; plot_history draws a line per run and its CSV holds
exactly the histories' values; a missing run or metric is a one-line error.
"""

import glob
import os

import gin
from matplotlib import image
import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem import figures
from t2t_vqem.train import trainer as trainer_lib

TRAIN_STEPS, EVAL_EVERY, CHECKPOINT_EVERY = 6, 2, 3
KILLED_AT = 4  # the evaluation at step 4 comes after the checkpoint at step 3
LATENT_RESULTS = {"bleu_teacher_forced", "bleu_greedy", "perplexity", "usage"}
COMMON = f"""
Trainer.problem = 'translate_grammar_ende'
Trainer.train_steps = {TRAIN_STEPS}
Trainer.eval_every = {EVAL_EVERY}
Trainer.checkpoint_every = {CHECKPOINT_EVERY}
Trainer.eval_bleu_examples = 2
Trainer.batch_tokens = 256
Trainer.log_every = 1
translate_grammar_ende.num_train = 100
translate_grammar_ende.num_eval = 4
translate_grammar_ende.vocab_size = 300
make_optimizer.warmup_steps = 2
"""
SIZES = dict(
  hidden_size=16,
  num_layers=1,
  num_heads=2,
  filter_size=32,
  dropout=0.0,
  compress_steps=2,
  mask_startup_steps=0,
  latent_loss_start_step=0,
)
BOTTLENECKS = {
  "latent_transformer_vq": "hard_em.codebook_size = 16\nhard_em.init_from_first_batch = True",
  "latent_transformer_em": (
    "soft_em.codebook_size = 16\nsoft_em.init_from_first_batch = True\nsoft_em.num_samples = 3"
  ),
}


class Killed(Exception):
  """Stands for the process dying right after an evaluation."""


def make_trainer(run_dir, data_dir, model):
  gin.clear_config()
  sizes = "\n".join(f"{model}.{k} = {v!r}" for k, v in SIZES.items())
  gin.parse_config(f"{COMMON}\nTrainer.model = '{model}'\n{sizes}\n{BOTTLENECKS[model]}\n")
  return trainer_lib.Trainer(run_dir, data_dir=data_dir)


def record_evaluations(trainer, kill_at=None):
  """[(step, split, results)] of every trainer.evaluate from now on, which raises Killed
  after the one at step kill_at."""
  calls, evaluate = [], trainer.evaluate

  def recorded(split="dev"):
    results = evaluate(split)
    calls.append((trainer.step, split, results))
    if trainer.step == kill_at:
      raise Killed
    return results

  trainer.evaluate = recorded
  return calls


def steps(run_dir):
  return [row["step"] for row in figures.read_history(run_dir)]


def results_of(row):
  return {k: v for k, v in row.items() if k not in ("step", "split")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A tiny soft EM run trained as the trainer's entry point does (train, then evaluate),
  killed after its evaluation at KILLED_AT and resumed: the resumed trainer is the same
  object (its traced steps reused), restoring the last checkpoint as a new process would."""
  data_dir = str(tmp_path_factory.getbasetemp() / "data")
  run_dir = str(tmp_path_factory.mktemp("soft_em"))
  trainer = make_trainer(run_dir, data_dir, "latent_transformer_em")
  killed_calls = record_evaluations(trainer, kill_at=KILLED_AT)
  with pytest.raises(Killed):
    trainer.train()
  seen = {"killed": steps(run_dir)}
  # An evaluation past the checkpoint that the resumed run does not repeat, with a
  # result name no real evaluation gives.
  trainer_lib.write_eval_history(
    run_dir, KILLED_AT + 1, "dev", {"reconstruction": -1.0, "orphan": 1.0}
  )
  seen["orphan"] = steps(run_dir)
  seen["restored_step"] = trainer.restore()
  seen["restored"] = steps(run_dir)
  del trainer.evaluate  # the recording one
  resumed_calls = record_evaluations(trainer)
  trainer.train()
  trainer.evaluate()
  trainer.eval_writer.flush()
  gin.clear_config()
  kept = [call for call in killed_calls if call[0] <= seen["restored_step"]]
  return run_dir, kept + resumed_calls, seen


def summaries(run_dir):
  """{(step, tag): value} of the run's eval TensorBoard summaries, the last one written."""
  events = []
  for path in glob.glob(os.path.join(run_dir, "eval", "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars":
          events.append((event.wall_time, event.step, value.tag, tf.make_ndarray(value.tensor)))
  return {(step, tag): float(value) for _, step, tag, value in sorted(events)}


def test_one_row_per_evaluation_equal_to_what_evaluate_returned(run):
  run_dir, calls, _ = run
  # In-loop evaluations every EVAL_EVERY steps before the last, then the entry point's.
  expected = [s for s in range(1, TRAIN_STEPS) if s % EVAL_EVERY == 0] + [TRAIN_STEPS]
  assert expected == [2, 4, 6]
  history = figures.read_history(run_dir)
  assert [row["step"] for row in history] == expected
  assert [(row["step"], row["split"]) for row in history] == [(s, sp) for s, sp, _ in calls]
  logged = summaries(run_dir)
  for row, (_, _, results) in zip(history, calls):
    assert results_of(row) == results  # exactly: the CSV holds repr of each float
    assert LATENT_RESULTS <= set(results), sorted(results)
    for name, value in results.items():
      assert logged[(row["step"], name)] == pytest.approx(value, rel=1e-6)
  columns, _ = figures.read_csv_table(figures.history_path(run_dir))
  assert columns[:2] == ["step", "split"]
  assert not glob.glob(os.path.join(run_dir, "*.tmp"))


def test_resume_drops_the_rows_past_the_restored_checkpoint(run):
  run_dir, _, seen = run
  assert seen["killed"] == [2, KILLED_AT]
  assert seen["orphan"] == [2, KILLED_AT, KILLED_AT + 1]
  assert seen["restored_step"] == CHECKPOINT_EVERY
  assert seen["restored"] == [2]
  history = figures.read_history(run_dir)
  assert [row["step"] for row in history] == [2, 4, 6]
  assert not any("orphan" in row or row["reconstruction"] == -1.0 for row in history)
  # The column set only grows: the orphan's name stays in the header, its cells empty.
  columns, _ = figures.read_csv_table(figures.history_path(run_dir))
  assert "orphan" in columns


def write_collapsing_run(run_dir):
  """A hard EM history of its own steps whose BLEU collapses (Figure 3's green curve),
  plus a test-split row that the dev plot leaves out."""
  for step, bleu in [(1, 2.0), (3, 9.5), (5, 11.0), (7, 0.5)]:
    trainer_lib.write_eval_history(run_dir, step, "dev", {"bleu_teacher_forced": bleu, "loss": 1})
  trainer_lib.write_eval_history(run_dir, 7, "test", {"bleu_teacher_forced": 50.0})


def test_plot_history_draws_every_run_and_writes_its_values(run, tmp_path):
  dirs = {"hard EM": str(tmp_path / "hard_em"), "soft EM": run[0]}
  os.makedirs(dirs["hard EM"])
  write_collapsing_run(dirs["hard EM"])
  png, csv_path = figures.plot_history(
    dirs,
    "bleu_teacher_forced",
    str(tmp_path / "figure3" / "bleu.png"),
    title="Figure 3",
    ylabel="teacher-forced BLEU",
  )
  assert csv_path == str(tmp_path / "figure3" / "bleu.csv")
  picture = tf.io.decode_png(tf.io.read_file(png)).numpy()
  assert picture.shape[0] > 100 and picture.shape[1] > 100
  rgb = image.imread(png)[..., :3]
  assert (np.abs(rgb - rgb[0, 0]).sum(-1) > 0.1).mean() > 0.01  # not just background
  for color in ("#1f77b4", "#ff7f0e"):  # the first two lines' default colors
    want = np.array([int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    assert (np.abs(rgb - want).max(-1) < 2 / 255).sum() > 10, color
  columns, rows = figures.read_csv_table(csv_path)
  assert columns == ["step", "label", "bleu_teacher_forced"]
  assert len({(row["label"], row["step"]) for row in rows}) == len(rows)
  for label, run_dir in dirs.items():
    plotted = [
      (int(r["step"]), float(r["bleu_teacher_forced"])) for r in rows if r["label"] == label
    ]
    dev = [row for row in figures.read_history(run_dir) if row["split"] == "dev"]
    assert plotted == [(row["step"], row["bleu_teacher_forced"]) for row in dev], label
  assert [r["step"] for r in rows if r["label"] == "hard EM"] == ["1", "3", "5", "7"]


def test_a_missing_metric_or_history_is_a_one_line_error(run, tmp_path):
  run_dir = run[0]
  png = str(tmp_path / "x.png")
  with pytest.raises(ValueError) as error:
    figures.plot_history({"soft EM": run_dir}, "bleu_sampled", png)
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(f"run 'soft EM' ({run_dir}) has no 'bleu_sampled'")
  assert all(name in message for name in LATENT_RESULTS | {"reconstruction"})
  with pytest.raises(ValueError, match=r"run 'soft EM' .* has no test evaluations \(splits: dev\)"):
    figures.plot_history({"soft EM": run_dir}, "reconstruction", png, split="test")
  missing = str(tmp_path / "never_trained")
  with pytest.raises(ValueError, match=r"run 'new' .* has no evaluation history"):
    figures.plot_history({"new": missing}, "reconstruction", png)
  assert not os.path.exists(png)


def test_header_grows_rows_replace_and_a_failed_write_keeps_the_file(tmp_path, monkeypatch):
  run_dir = str(tmp_path)
  trainer_lib.write_eval_history(run_dir, 1, "dev", {"b": 0.1 + 0.2})
  trainer_lib.write_eval_history(run_dir, 2, "dev", {"b": 2.0, "a": 0.5})
  trainer_lib.write_eval_history(run_dir, 2, "dev", {"b": 3.0})  # evaluated again: replaces
  trainer_lib.write_eval_history(run_dir, 2, "test", {"b": 4.0})
  path = figures.history_path(run_dir)
  assert open(path).read().splitlines() == [
    "step,split,b,a",
    "1,dev,0.30000000000000004,",
    "2,dev,3.0,",
    "2,test,4.0,",
  ]
  assert figures.read_history(run_dir)[0] == {"step": 1, "split": "dev", "b": 0.1 + 0.2}
  before = open(path).read()

  def fail(fd):
    raise OSError("disk full")

  monkeypatch.setattr(figures.os, "fsync", fail)
  with pytest.raises(OSError, match="disk full"):
    trainer_lib.write_eval_history(run_dir, 3, "dev", {"b": 5.0})
  monkeypatch.undo()
  assert open(path).read() == before and os.listdir(run_dir) == [figures.EVAL_HISTORY]
  assert trainer_lib.truncate_eval_history(run_dir, 1) == 2
  assert trainer_lib.truncate_eval_history(run_dir, 1) == 0
  assert open(path).read().splitlines() == ["step,split,b,a", "1,dev,0.30000000000000004,"]
