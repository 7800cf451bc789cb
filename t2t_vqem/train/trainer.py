"""The Keras 3 custom training loop under a tf.distribute strategy.

Each step runs `model.loss_terms(features, training=True)` on every replica.
A model returns its losses as (numerator, denominator) pairs, e.g. the summed
token cross entropy and the number of tokens; the trainer all-reduces each
denominator so that the loss is the mean over the *global* batch, and the
optimizer sums the replicas' gradients. N replicas on a global batch therefore
follow the same trajectory as one replica on that batch.
"""

import math
import os
import time

from absl import logging
import gin
import keras
import tensorflow as tf

from t2t_vqem import constants
from t2t_vqem import export as export_lib
from t2t_vqem import figures
from t2t_vqem import files
from t2t_vqem import pictures
from t2t_vqem import registry
from t2t_vqem.train import checkpoints
from t2t_vqem.train import progress as progress_lib
from t2t_vqem.train import run_dir
from t2t_vqem.train import schedule
from t2t_vqem.train import strategy as strategy_lib
from t2t_vqem.train import warm_start

SUM = tf.distribute.ReduceOp.SUM

# A run's folder (t2t_vqem/train/run_dir.py), also reachable from here.
RUN_INFO, TEST_RESULTS, OutputDirError = (
  run_dir.RUN_INFO,
  run_dir.TEST_RESULTS,
  run_dir.OutputDirError,
)
check_run_info, load_run = run_dir.check_run_info, run_dir.load_run
write_eval_history, truncate_eval_history = (
  run_dir.write_eval_history,
  run_dir.truncate_eval_history,
)


class NonFiniteError(RuntimeError):
  """Training stopped: too many non-finite steps in a row, or non-finite weights."""


def replica_shard(features):
  """This replica's contiguous slice of a global batch (all of it on one replica).

  Every replica receives the whole global batch and takes rows
  [i * b, (i + 1) * b), b = ceil(B / replicas); so the split is the same
  whatever the strategy, and the plain (checkpointable) dataset iterator
  drives every strategy.
  """
  ctx = tf.distribute.get_replica_context()
  replicas = ctx.num_replicas_in_sync
  if replicas == 1:
    return features
  batch = tf.shape(tf.nest.flatten(features)[0])[0]
  size = (batch + replicas - 1) // replicas
  start = tf.minimum(ctx.replica_id_in_sync_group * size, batch)
  end = tf.minimum(start + size, batch)
  return tf.nest.map_structure(lambda x: x[start:end], features)


def random_states(model):
  """The state variables of the model's Keras seed generators, in a fixed order."""
  return sorted(
    (v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")),
    key=lambda v: v.path,
  )


@gin.configurable(denylist=["output_dir", "data_dir"])
class Trainer:
  """Builds problem, model and optimizer under a strategy; trains, evaluates, checkpoints.

  Args:
    output_dir: checkpoints, summaries, operative config; rerunning with the
      same output_dir resumes from its last checkpoint.
    model: registered model name.
    problem: registered problem name.
    data_dir: problem data and vocabulary cache.
    train_steps: total optimizer steps (a resumed run goes on to this count).
    batch_tokens: tokens per global batch (source or target, the longer), for
      problems batched by tokens (text; see Problem.batch_amount).
    batch_size: examples per global batch, for problems batched by examples
      (images).
    checkpoint_every: steps between checkpoints (one is also written at the end).
    keep_checkpoints: how many checkpoints to keep.
    eval_every: steps between evaluations on the dev split (0: only at the end).
    eval_bleu_examples: examples of the split whose outputs each evaluation
      scores (Problem.output_metrics; text: greedy BLEU), 0: none.
    eval_pictures: pictures shown at each evaluation (Problem.output_pictures;
      images: originals over reconstructions, and as many prior samples),
      written to output_dir/pictures/ as PNG and to TensorBoard (0: none).
    log_every: steps between progress lines and training summaries; each
      shows the mean of its values over the steps since the last line.
    seed: seed of weights, dropout and data order.
    checkpoint_data: also checkpoint the input iterator, so that a resumed run
      sees exactly the batches an uninterrupted one would.
    batch_multiple: every bucket's batch size is a multiple of this (default:
      the number of replicas); set it to compare runs on different replica
      counts with the same global batches.
    export_at_end: after training, write the serving SavedModel to
      output_dir/export (see t2t_vqem.export; its settings are the Gin
      parameters of export_model).
    warm_start_from: a trained run whose model's parts start this one (ours;
      t2t_vqem/train/warm_start.py), e.g. the teacher of a distilled student;
      None: from scratch. Only a fresh run is warm-started.
    warm_start_parts: (this model's layer, that model's layer) pairs to copy;
      the default: a Latent Transformer's embedding and source encoder from a
      Transformer's.
    max_nonfinite_steps: training stops with NonFiniteError after this many
      non-finite steps in a row.

  Non-finite steps: a step whose loss or gradients hold a NaN or an Inf on any
  replica applies no update: the optimizer's weights, slots and step count and
  the model's own state (the EMA codebook and its statistics) stay as they were
  before it; its batch is consumed, and the step is counted (the
  `nonfinite_steps` summary) and logged with the loss terms that went bad. No
  checkpoint holding a non-finite variable is written (NonFiniteError instead),
  so every checkpoint kept is a good one.

  Resuming reads the newest checkpoint that can be read whole (see
  t2t_vqem/train/checkpoints.py): a truncated or partial newest one is logged
  and skipped.

  Evaluation history: every `evaluate` (those during training, the entry point's
  after it, a test split's) also puts a row into output_dir/eval_history.csv:
  `step`, `split`, then each result name (losses and metrics; for a latent
  translation model bleu_teacher_forced, bleu_greedy, perplexity and usage, the
  paper's Figure 3 plotting the first), a value written as Python's repr of the
  float, a cell empty where that evaluation gave no such result. The header only
  grows: a new result name is appended to it. Each write rewrites the whole file
  to a temporary one and renames it over, so after a crash the file is complete
  or absent. A step and split evaluated again replaces its row, and `restore`
  drops every row past the restored checkpoint's step (0 without one): a run
  killed after evaluating past its last checkpoint evaluates those steps again
  on resuming, and holds each once.
  t2t_vqem.figures reads and plots it.
  """

  def __init__(
    self,
    output_dir,
    model=gin.REQUIRED,
    problem=gin.REQUIRED,
    data_dir=None,
    train_steps=100000,
    batch_tokens=4096,
    batch_size=64,
    checkpoint_every=1000,
    keep_checkpoints=5,
    eval_every=1000,
    eval_bleu_examples=100,
    eval_pictures=8,
    log_every=100,
    seed=1,
    checkpoint_data=True,
    batch_multiple=None,
    export_at_end=False,
    warm_start_from=None,
    warm_start_parts=warm_start.STUDENT_FROM_TEACHER,
    max_nonfinite_steps=10,
  ):
    self.output_dir = output_dir
    self.model_name, self.problem_name = model, problem
    self.train_steps, self.batch_tokens = train_steps, batch_tokens
    self.eval_pictures = eval_pictures
    self.checkpoint_every, self.eval_every = checkpoint_every, eval_every
    self.eval_bleu_examples, self.log_every = eval_bleu_examples, log_every
    self.seed = seed
    if max_nonfinite_steps < 1:
      raise ValueError(f"Trainer.max_nonfinite_steps={max_nonfinite_steps} must be at least 1")
    self.max_nonfinite_steps, self.nonfinite_steps = max_nonfinite_steps, 0
    self.export_at_end = export_at_end
    self.data_dir, self.warm_start_from = data_dir, warm_start_from
    self.warm_start_parts = warm_start.check_parts(warm_start_parts)
    # Fail on unknown names before any work is done.
    registry.model(model)
    registry.problem(problem)
    check_run_info(output_dir, {"model": model, "problem": problem})
    keras.utils.set_random_seed(seed)

    self.strategy = strategy_lib.make_strategy()
    self.problem = registry.build_problem(problem, data_dir=data_dir)
    if hasattr(self.problem, "fingerprint"):
      run_dir.check_run_data(output_dir, self.problem.fingerprint())
    self.vocab = self.problem.vocab  # None for image problems
    # What problem.batches takes per global batch: tokens (text) or pictures (images).
    self.batch_amount = self.problem.batch_amount(batch_tokens, batch_size)
    with self.strategy.scope():
      self.model = registry.build_model(model, **self.problem.model_kwargs())
      self.model(self.problem.dummy_features(), training=False)
      self.optimizer = schedule.make_optimizer()
      self.optimizer.build(self.model.trainable_variables)
    self.num_replicas = self.strategy.num_replicas_in_sync
    if batch_multiple and batch_multiple % self.num_replicas:
      raise ValueError(
        f"Trainer.batch_multiple={batch_multiple} must be a multiple of "
        f"the {self.num_replicas} replicas"
      )
    train_data = self.problem.batches(
      constants.TRAIN,
      self.batch_amount,
      shuffle=True,
      repeat=True,
      num_replicas=batch_multiple or self.num_replicas,
      seed=seed,
    )
    self.train_iterator = iter(train_data)
    trackables = {"model": self.model, "optimizer": self.optimizer}
    if checkpoint_data:
      trackables["data"] = self.train_iterator
    # Keras keeps its seed generators' states (dropout, sampling) out of a
    # model's checkpoint; without them a resumed run would draw other masks.
    trackables["random"] = random_states(self.model)
    self.checkpoint = tf.train.Checkpoint(**trackables)
    self._trackables = trackables
    self.manager = tf.train.CheckpointManager(
      self.checkpoint, os.path.join(output_dir, "checkpoints"), max_to_keep=keep_checkpoints
    )
    # Any batch size: training batches may be all full (a static size) while
    # an evaluation split ends with its remainder.
    signature = [
      tf.nest.map_structure(
        lambda spec: tf.TensorSpec([None] + spec.shape[1:], spec.dtype), train_data.element_spec
      )
    ]
    self.train_step = tf.function(self._distributed_train_step, input_signature=signature)
    self._eval_step = tf.function(self._distributed_eval_step, input_signature=signature)
    self.train_writer = tf.summary.create_file_writer(os.path.join(output_dir, "train"))
    self.eval_writer = tf.summary.create_file_writer(os.path.join(output_dir, "eval"))

  @property
  def step(self):
    return int(self.optimizer.iterations.numpy())

  def restore(self):
    """Restores the latest checkpoint in output_dir, if any; returns the step."""
    path = checkpoints.newest_readable(self.manager.directory)
    if path:
      checkpoint = self.checkpoint
      if not any(name.startswith("random/") for name, _ in tf.train.list_variables(path)):
        logging.warning(
          "%s holds no random-number state (written by an older version): the "
          "resumed run draws other dropout masks and samples than an unbroken one",
          path,
        )
        checkpoint = tf.train.Checkpoint(
          **{k: v for k, v in self._trackables.items() if k != "random"}
        )
      try:
        checkpoint.restore(path).assert_existing_objects_matched()
      except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise OutputDirError(
          f"checkpoint {path!r} does not match model {self.model_name!r} as "
          f"configured now (were its sizes changed?): {str(e).splitlines()[0]}"
        ) from None
      logging.info("Resumed from %s at step %d", path, self.step)
    dropped = truncate_eval_history(self.output_dir, self.step)
    if dropped:
      logging.info(
        "Dropped %d evaluation(s) past step %d from %s",
        dropped,
        self.step,
        figures.history_path(self.output_dir),
      )
    return self.step

  def _global_mean(self, terms):
    """(numerator, denominator) pairs -> numerator / all-reduced denominator."""
    ctx = tf.distribute.get_replica_context()
    return {
      name: num / tf.maximum(ctx.all_reduce(SUM, den), 1.0) for name, (num, den) in terms.items()
    }

  def _replica_gradients(self, features):
    """Loss terms and gradients of this replica's share; the model's state as before when
    any replica's loss or gradients are not finite (see Trainer: non-finite steps)."""
    features = replica_shard(features)
    state = self.model.non_trainable_variables
    before = [tf.identity(v) for v in state]  # read before the forward pass assigns them
    with tf.GradientTape() as tape:
      losses, extra = self.model.loss_terms(features, training=True, step=self.optimizer.iterations)
      values = self._global_mean(losses)
      loss = tf.add_n(list(values.values()))
    grads = tape.gradient(loss, self.model.trainable_variables)
    values.update(self._global_mean(extra))
    checked = [loss] + [g for g in grads if g is not None]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in checked])
    ctx = tf.distribute.get_replica_context()
    finite = tf.equal(ctx.all_reduce(SUM, 1.0 - tf.cast(finite, tf.float32)), 0.0)
    for variable, value in zip(state, before):  # e.g. the EMA codebook's E/M step
      variable.assign(tf.where(finite, variable, value))
    values["loss"] = loss
    values["items"] = self.problem.batch_items(features)
    return grads, values, finite

  def _replica_apply(self, grads):
    self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))

  def _distributed_train_step(self, features):
    grads, per_replica, finite = self.strategy.run(self._replica_gradients, args=(features,))
    finite = self.strategy.experimental_local_results(finite)[0]  # the same on every replica

    def apply():
      self.strategy.run(self._replica_apply, args=(grads,))
      return tf.constant(True)

    applied = tf.cond(finite, apply, lambda: tf.constant(False))
    values = {k: self.strategy.reduce(SUM, v, axis=None) for k, v in per_replica.items()}
    values["finite"] = applied
    return values

  def _replica_eval_step(self, features):
    features = replica_shard(features)
    losses, extra = self.model.loss_terms(features, training=False)
    sums = {}
    for name, (num, den) in {**losses, **extra}.items():
      sums[name] = tf.stack([num, den])
    return sums

  def _distributed_eval_step(self, features):
    per_replica = self.strategy.run(self._replica_eval_step, args=(features,))
    return {k: self.strategy.reduce(SUM, v, axis=None) for k, v in per_replica.items()}

  def evaluate(self, split=constants.DEV):
    """Losses and metrics of a split (means over its tokens or sub-pixels).

    Plus the problem's metrics of the model's outputs (text: greedy BLEU and,
    for latent models, BLEU with latents from the target encoder) and its
    pictures (images: see `write_pictures`). Written to TensorBoard and as a row
    of output_dir/eval_history.csv (see the class docstring).
    """
    totals = {}
    dataset = self.problem.batches(split, self.batch_amount, num_replicas=self.num_replicas)
    for features in dataset:
      for name, value in self._eval_step(features).items():
        totals[name] = totals.get(name, 0.0) + value.numpy()
    results = {name: float(num / max(den, 1.0)) for name, (num, den) in totals.items()}
    results.update(self.problem.output_metrics(self.model, split, self.eval_bleu_examples))
    self.write_pictures(split)
    step = self.step
    with self.eval_writer.as_default(step=step):
      for name, value in results.items():
        tf.summary.scalar(name, value)
    write_eval_history(self.output_dir, step, split, results)
    logging.info(
      "eval %s at step %d: %s",
      split,
      step,
      "  ".join(f"{k} {v:.4f}" for k, v in sorted(results.items())),
    )
    return results

  def write_pictures(self, split=constants.DEV):
    """The problem's pictures of the model's outputs on `split` (Problem.output_pictures).

    Images: the paper's Fig. 4 for `eval_pictures` pictures, and prior samples.
    Writes output_dir/pictures/<name>-<step>.png and logs each to TensorBoard;
    returns {name: path} (empty when the problem shows none).
    """
    step = self.step
    shown = self.problem.output_pictures(self.model, split, self.eval_pictures, [self.seed, step])
    if not shown:
      return {}
    os.makedirs(os.path.join(self.output_dir, "pictures"), exist_ok=True)
    paths = {}
    with self.eval_writer.as_default(step=step):
      for name, picture in shown.items():
        paths[name] = os.path.join(self.output_dir, "pictures", f"{name}-{step}.png")
        pictures.write_png(paths[name], picture)
        tf.summary.image(name, picture[None])
    logging.info("Pictures: %s", ", ".join(paths.values()))
    return paths

  def write_test_results(self):
    """The test split's results in output_dir/test_results.json, for a problem that reports
    them after training (Problem.reports_test_results; images: the paper's bits/dim).

    Returns:
      a line saying what was written, or None when the problem reports nothing.
    """
    if not self.problem.reports_test_results:
      return None
    results = self.evaluate(constants.TEST)
    path = os.path.join(self.output_dir, TEST_RESULTS)
    files.write_json(path, dict(results, step=self.step))
    return f"test {self.problem.results_line(results)} at step {self.step}: {path}"

  def write_operative_config(self):
    files.write_text(
      os.path.join(self.output_dir, "operative_config.gin"), gin.operative_config_str()
    )

  def export(self, export_dir=None):
    """Writes the serving SavedModel of the model as it is now (default: output_dir/export)."""
    export_dir = export_dir or os.path.join(self.output_dir, "export")
    return export_lib.export_model(
      self.model, self.problem, export_dir, extra_info={"step": self.step}
    )

  def _skipped_step(self, step, values, in_a_row):
    """Counts and logs a step whose update was not applied; stops after too many in a row."""
    self.nonfinite_steps += 1
    bad = [name for name, v in values.items() if name != "items" and not math.isfinite(float(v))]
    what = "loss terms " + ", ".join(sorted(bad)) if bad else "gradients"
    logging.warning(
      "Step %d: %s not finite; update skipped (%d in a row, %d in this run)",
      step,
      what,
      in_a_row,
      self.nonfinite_steps,
    )
    if in_a_row >= self.max_nonfinite_steps:
      raise NonFiniteError(
        f"step {step}: {what} not finite in {in_a_row} steps in a row "
        f"(Trainer.max_nonfinite_steps={self.max_nonfinite_steps}); no update was "
        f"applied, the last checkpoint is {self.manager.latest_checkpoint or 'none yet'}; lower "
        f"make_optimizer.learning_rate or look at the data"
      )

  def save(self, step):
    """Writes checkpoint `step`, refusing when a weight or optimizer slot is not finite."""
    bad = checkpoints.nonfinite_variables(self.model.variables + self.optimizer.variables)
    if bad:
      raise NonFiniteError(
        f"step {step}: {len(bad)} variable(s) not finite ({', '.join(bad[:3])}); "
        f"no checkpoint written, the last good one is {self.manager.latest_checkpoint!r}"
      )
    self.manager.save(checkpoint_number=step)

  def train(self):
    """Trains to train_steps from wherever the output_dir left off."""
    start = self.restore()
    self.write_operative_config()
    if start == 0 and self.warm_start_from:
      warm_start.from_run(self.model, self.warm_start_from, self.warm_start_parts, self.data_dir)
    if start >= self.train_steps:
      logging.info("Already trained to step %d (train_steps=%d)", start, self.train_steps)
      if self.export_at_end:
        self.export()
      return {}
    if (
      self.eval_every
      and start % self.eval_every == 0
      and not run_dir.has_evaluation(self.output_dir, start, constants.DEV)
      and start
    ):
      self.evaluate()  # killed between the checkpoint and its evaluation
    progress = progress_lib.Progress(start, self.train_steps, self.problem.item_unit)
    logging.info(
      "Training %s on %s with %d replica(s) from step %d to %d",
      self.model_name,
      self.problem_name,
      self.num_replicas,
      start,
      self.train_steps,
    )
    values, window, window_steps = {}, {}, 0
    step, in_a_row = start, 0
    started = time.perf_counter()
    while step < self.train_steps:
      # Summed as tensors: no host sync until the window's line is written.
      out = self.train_step(next(self.train_iterator))
      if not bool(out.pop("finite")):
        in_a_row += 1
        self._skipped_step(step + 1, out, in_a_row)
        continue
      step, in_a_row = step + 1, 0
      for name, value in out.items():
        window[name] = window[name] + value if name in window else value
      window_steps += 1
      if step % self.log_every == 0 or step == self.train_steps:
        progress.add_items(window.pop("items"))
        values = {k: float(v) / window_steps for k, v in window.items()}
        window, window_steps = {}, 0
        lr = self.optimizer.learning_rate
        with self.train_writer.as_default(step=step):
          for name, value in values.items():
            tf.summary.scalar(name, value)
          tf.summary.scalar("learning_rate", lr)
          tf.summary.scalar("nonfinite_steps", self.nonfinite_steps)
        logging.info(progress.line(step, values, lr))
      if step % self.checkpoint_every == 0 or step == self.train_steps:
        self.save(step)
      if self.eval_every and step % self.eval_every == 0 and step != self.train_steps:
        self.evaluate()
    logging.info(
      "Trained %d steps in %.1f s", self.train_steps - start, time.perf_counter() - started
    )
    if self.export_at_end:
      self.export()
    self.write_operative_config()
    return {k: float(v) for k, v in values.items()}
