"""Training survives faults: non-finite steps, non-finite weights, unreadable checkpoints.

Each test injects the fault: a loss multiplied by NaN on chosen steps, a weight
set to NaN, a checkpoint file truncated or removed.
"""

import os
import shutil

import gin
import numpy as np
import pytest
import tensorflow as tf
import tiny

from t2t_vqem.train import checkpoints
from t2t_vqem.train import trainer as trainer_lib

LATENT_EM = tiny.LATENT_EM


@pytest.fixture
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.getbasetemp() / "data")


def teardown_function():
  gin.clear_config()


def make_trainer(output_dir, data_dir, *bindings):
  gin.clear_config()
  gin.parse_config(LATENT_EM + "\n".join(bindings))
  return trainer_lib.Trainer(str(output_dir), data_dir=data_dir)


def poison(trainer):
  """Makes the trainer's first loss term NaN while the returned variable is True."""
  on = tf.Variable(False)
  loss_terms = trainer.model.loss_terms

  def poisoned(features, **kwargs):
    losses, extra = loss_terms(features, **kwargs)
    name = sorted(losses)[0]
    num, den = losses[name]
    losses[name] = (tf.where(on, tf.constant(np.nan, num.dtype), num), den)
    return losses, extra

  trainer.model.loss_terms = poisoned
  return on


def state(trainer):
  """Every variable a step may change: weights, the EMA codebook and statistics, optimizer."""
  return [np.array(v) for v in trainer.model.variables + trainer.optimizer.variables]


def codebook_state(trainer):
  return [np.array(v) for v in trainer.model.non_trainable_variables]


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_a_nonfinite_step_applies_no_update_and_training_goes_on(tmp_path, data_dir, strategy):
  bindings = [f"make_strategy.name = '{strategy}'", "Trainer.batch_multiple = 2"]
  if strategy == "mirrored":
    bindings.append("make_strategy.devices = ['CPU:0', 'CPU:1']")
  trainer = make_trainer(tmp_path, data_dir, *bindings)
  on = poison(trainer)
  for _ in range(2):
    assert bool(trainer.train_step(next(trainer.train_iterator))["finite"])
  before, codes_before = state(trainer), codebook_state(trainer)

  on.assign(True)
  values = trainer.train_step(next(trainer.train_iterator))
  assert not bool(values["finite"])
  # Nothing moved: weights, Adam's slots and step count, the codebook and its EMA.
  for a, b in zip(before, state(trainer)):
    np.testing.assert_array_equal(a, b)
  assert trainer.step == 2

  on.assign(False)
  assert bool(trainer.train_step(next(trainer.train_iterator))["finite"])
  assert trainer.step == 3
  # A finite step does move the EMA codebook (so the check above could fail).
  assert any(not np.array_equal(a, b) for a, b in zip(codes_before, codebook_state(trainer)))


def test_nonfinite_steps_in_a_row_stop_the_run_naming_the_step_and_the_term(tmp_path, data_dir):
  trainer = make_trainer(
    tmp_path,
    data_dir,
    "Trainer.train_steps = 10",
    "Trainer.checkpoint_every = 2",
    "Trainer.max_nonfinite_steps = 3",
  )
  on = poison(trainer)
  for _ in range(4):  # steps 1-4, checkpoints 2 and 4
    trainer.train_step(next(trainer.train_iterator))
  trainer.save(4)
  after_4 = state(trainer)
  on.assign(True)
  with pytest.raises(trainer_lib.NonFiniteError) as info:
    trainer.train()
  message = str(info.value)
  assert "\n" not in message
  assert message.startswith("step 5: loss terms ")
  assert "3 steps in a row" in message and "ckpt-4" in message
  assert trainer.nonfinite_steps == 3 and trainer.step == 4
  for a, b in zip(after_4, state(trainer)):
    np.testing.assert_array_equal(a, b)


def test_a_nonfinite_step_within_train_is_skipped_and_not_counted(tmp_path, data_dir):
  """train() makes train_steps updates; the skipped step's batch is consumed."""
  trainer = make_trainer(tmp_path, data_dir, "Trainer.train_steps = 4")
  on = poison(trainer)
  train_step = trainer.train_step
  calls = []

  def third_call_poisoned(features):
    calls.append(1)
    on.assign(len(calls) == 3)
    return train_step(features)

  trainer.train_step = third_call_poisoned
  trainer.train()
  assert len(calls) == 5 and trainer.nonfinite_steps == 1
  assert trainer.step == 4
  assert os.path.exists(tmp_path / "checkpoints" / "ckpt-4.index")


def test_a_checkpoint_with_a_nonfinite_weight_is_never_written(tmp_path, data_dir):
  # No step is trained: what is written (and refused) is the model and optimizer as they
  # are, and training one step would only trace the step first.
  trainer = make_trainer(tmp_path, data_dir, "Trainer.keep_checkpoints = 1")
  trainer.save(1)
  codebook = next(v for v in trainer.model.non_trainable_variables if "codebook" in v.path)
  codebook.assign(tf.tensor_scatter_nd_update(codebook, [[0, 0]], [np.inf]))
  with pytest.raises(trainer_lib.NonFiniteError, match=r"step 2: 1 variable\(s\) not finite"):
    trainer.save(2)
  # Rotation (keep 1) did not run: the good checkpoint is still there, alone.
  assert [os.path.basename(p) for p in checkpoints.listed(str(tmp_path / "checkpoints"))] == [
    "ckpt-1"
  ]
  assert checkpoints.unreadable(str(tmp_path / "checkpoints" / "ckpt-1")) is None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A 6-step run (checkpoints 2, 4, 6) and what a 2-step and a 4-step run of the same
  config and seed leave: copies of its output_dir taken as checkpoint 2 and 4 were
  written, in root/"two" and root/"four" (the learning rate does not depend on
  train_steps, so those runs' steps are its first ones)."""
  root = tmp_path_factory.mktemp("runs")
  data_dir = str(root / "data")
  output_dir = root / "straight"
  trainer = make_trainer(
    output_dir, data_dir, "Trainer.train_steps = 6", "Trainer.checkpoint_every = 2"
  )
  save = trainer.save

  def save_and_copy(step):
    save(step)
    if step in (2, 4):
      shutil.copytree(output_dir, root / {2: "two", 4: "four"}[step])

  trainer.save = save_and_copy
  trainer.train()
  assert trainer.step == 6
  straight = state(trainer)
  gin.clear_config()
  for name, newest in (("two", "ckpt-2"), ("four", "ckpt-4")):
    listed = checkpoints.listed(str(root / name / "checkpoints"))
    assert os.path.basename(listed[0]) == newest
  return root, data_dir, straight


@pytest.mark.parametrize("fault", ["truncated data", "missing index", "missing data shard"])
def test_an_unreadable_newest_checkpoint_is_skipped_and_the_run_ends_the_same(
  tmp_path, runs, fault
):
  root, data_dir, straight = runs
  shutil.copytree(root / "four", tmp_path / "faulty")
  prefix = str(tmp_path / "faulty" / "checkpoints" / "ckpt-4")
  if fault == "truncated data":
    with open(prefix + ".data-00000-of-00001", "r+b") as f:
      f.truncate(os.path.getsize(prefix + ".data-00000-of-00001") // 2)
  elif fault == "missing index":
    os.remove(prefix + ".index")
  else:
    os.remove(prefix + ".data-00000-of-00001")
  resumed = make_trainer(
    tmp_path / "faulty", data_dir, "Trainer.train_steps = 6", "Trainer.checkpoint_every = 2"
  )
  assert resumed.restore() == 2
  resumed.train()
  assert resumed.step == 6
  # Same seed, data position and random state checkpointed: bit-identical to the
  # run never hurt.
  for a, b in zip(straight, state(resumed)):
    np.testing.assert_array_equal(a, b)


def test_no_readable_checkpoint_is_a_one_line_error(tmp_path, runs):
  root, data_dir, _ = runs
  run = tmp_path / "run"
  shutil.copytree(root / "two", run)  # a 2-step run: checkpoint 2 only
  os.remove(str(run / "checkpoints" / "ckpt-2.index"))
  trainer = make_trainer(run, data_dir, "Trainer.train_steps = 4")
  with pytest.raises(checkpoints.CheckpointError, match="no checkpoint in .* can be read: ckpt-2"):
    trainer.train()


def test_load_run_falls_back_to_the_newest_readable_checkpoint(tmp_path, runs):
  root, data_dir, _ = runs
  run = tmp_path / "run"
  shutil.copytree(root / "four", run)  # a 4-step run: checkpoints 2 and 4
  os.remove(str(run / "checkpoints" / "ckpt-4.index"))
  gin.clear_config()
  _, _, path = trainer_lib.load_run(str(run), data_dir=data_dir)
  assert os.path.basename(path) == "ckpt-2"


def tsv_trainer(output_dir, data_dir, train_path, dev_path):
  """A Transformer (the data check is the model's no matter which) on translate_tsv."""
  gin.clear_config()
  lines = [
    line for line in tiny.TRANSFORMER.splitlines() if not line.startswith("translate_grammar")
  ]
  gin.parse_config(
    "\n".join(lines).replace("translate_grammar_ende", "translate_tsv")
    + f"\ntranslate_tsv.vocab_size = 100\ntranslate_tsv.train_path = '{train_path}'"
    + f"\ntranslate_tsv.dev_path = '{dev_path}'\ntranslate_tsv.test_path = '{dev_path}'"
    + "\nTrainer.train_steps = 1"
  )
  return trainer_lib.Trainer(str(output_dir), data_dir=data_dir)


def test_an_output_dir_resumed_on_other_data_is_refused_a_moved_corpus_is_not(tmp_path):
  pairs = [f"the {a} sees {b}\tder {a} sieht {b}\n" for a in "xyzw" for b in "pqrs"]
  first, other, moved = (tmp_path / n for n in ("first.tsv", "other.tsv", "moved.tsv"))
  first.write_text("".join(pairs))
  other.write_text("".join(pairs[:-1]) + "the q sees x\tder q sieht x\n")
  moved.write_text("".join(pairs))
  data_dir = str(tmp_path / "data")
  tsv_trainer(tmp_path / "run", data_dir, first, first).train()
  tsv_trainer(tmp_path / "run", data_dir, moved, moved)  # same contents elsewhere: accepted
  with pytest.raises(trainer_lib.OutputDirError, match=r"other data .*\(differing: train\)"):
    tsv_trainer(tmp_path / "run", data_dir, other, first)
