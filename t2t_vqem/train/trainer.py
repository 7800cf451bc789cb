"""The Keras 3 custom training loop under a tf.distribute strategy.

Each step runs `model.loss_terms(features, training=True)` on every replica,
on that replica's slice of the global batch (t2t_vqem/train/inputs.py); the
losses are means over the global batch and the gradients are summed
(t2t_vqem/train/steps.py), so N replicas follow one replica's trajectory.
Several workers (TF_CONFIG, MultiWorkerMirroredStrategy) each read their share
of the data; worker 0, the chief, writes the run's files.
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
from t2t_vqem.train import inputs
from t2t_vqem.train import progress as progress_lib
from t2t_vqem.train import run_dir
from t2t_vqem.train import schedule
from t2t_vqem.train import steps as steps_lib
from t2t_vqem.train import strategy as strategy_lib
from t2t_vqem.train import warm_start

# A run's folder (t2t_vqem/train/run_dir.py), also reachable from here.
RUN_INFO, TEST_RESULTS, OutputDirError = (
  run_dir.RUN_INFO,
  run_dir.TEST_RESULTS,
  run_dir.OutputDirError,
)
check_run_info, load_run, machine = run_dir.check_run_info, run_dir.load_run, run_dir.machine
random_states = checkpoints.random_states
write_eval_history, truncate_eval_history = (
  run_dir.write_eval_history,
  run_dir.truncate_eval_history,
)


class NonFiniteError(RuntimeError):
  """Training stopped: too many non-finite steps in a row, or non-finite weights."""


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
    precision: "float32", or a Keras mixed precision policy (ours):
      "mixed_bfloat16", "mixed_float16" (with loss scaling); see steps.py.
    jit_compile: compile each replica's forward and backward pass with XLA
      (ours; one replica per worker).

  Several workers: every worker runs the same command with its TF_CONFIG.
  Worker 0 (the chief) writes checkpoints, summaries, the operative config,
  the evaluation history, pictures, test results and exports; every other
  worker i writes only its own checkpoints, to checkpoints/worker-<i>/ (they
  hold its data position, so a resumed run is exact) and nothing else.

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
    precision="float32",
    jit_compile=False,
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
    self.strategy = strategy_lib.make_strategy()
    self.num_workers, self.worker = strategy_lib.worker_role(self.strategy)
    self.chief = self.worker == 0  # the one worker that writes the run's files
    check_run_info(output_dir, {"model": model, "problem": problem}, write=self.chief)
    keras.utils.set_random_seed(seed)

    self.problem = registry.build_problem(problem, data_dir=data_dir)
    if hasattr(self.problem, "fingerprint"):
      run_dir.check_run_data(output_dir, self.problem.fingerprint(), write=self.chief)
    if self.chief:  # learns the vocabulary on first use, once for all workers
      self.problem.vocab
    strategy_lib.barrier(self.strategy)
    self.vocab = self.problem.vocab  # None for image problems
    # What problem.batches takes per global batch: tokens (text) or pictures (images).
    self.batch_amount = self.problem.batch_amount(batch_tokens, batch_size)
    self.num_replicas = self.strategy.num_replicas_in_sync
    if jit_compile and self.num_replicas > self.num_workers:
      raise ValueError(
        f"Trainer.jit_compile=True takes one replica per worker, not "
        f"{self.num_replicas // self.num_workers}; use make_strategy.name = 'default' "
        "or one device per worker"
      )
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(steps_lib.check_precision(precision))
    try:  # the policy is the model's layers' (set when each is made)
      with self.strategy.scope():
        self.model = registry.build_model(model, **self.problem.model_kwargs())
        self.model(self.problem.dummy_features(), training=False)
        self.optimizer = schedule.make_optimizer()
        if precision == "mixed_float16":
          self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
        self.optimizer.build(self.model.trainable_variables)
    finally:
      keras.config.set_dtype_policy(policy)
    if batch_multiple and batch_multiple % self.num_replicas:
      raise ValueError(
        f"Trainer.batch_multiple={batch_multiple} must be a multiple of "
        f"the {self.num_replicas} replicas"
      )
    # Each worker reads its share; each replica receives only its slice (inputs.py).
    self.train_iterator = inputs.ReplicaBatches(
      self.strategy, self.problem, self.batch_amount, batch_multiple or self.num_replicas, seed
    )
    trackables = {"model": self.model, "optimizer": self.optimizer}
    if checkpoint_data:
      trackables["data"] = self.train_iterator.iterator
    # Keras keeps its seed generators' states (dropout, sampling) out of a
    # model's checkpoint; without them a resumed run would draw other masks.
    trackables["random"] = checkpoints.random_states(self.model)
    self.checkpoint = tf.train.Checkpoint(**trackables)
    self._trackables = trackables
    # Other workers keep theirs (their data position) in checkpoints/worker-<i>.
    self.checkpoint_dir = os.path.join(output_dir, "checkpoints")
    if not self.chief:
      self.checkpoint_dir = os.path.join(self.checkpoint_dir, f"worker-{self.worker}")
    self.manager = tf.train.CheckpointManager(
      self.checkpoint, self.checkpoint_dir, max_to_keep=keep_checkpoints
    )
    self.steps = steps_lib.Steps(
      self.strategy,
      self.model,
      self.optimizer,
      self.problem,
      self.train_iterator.place,
      jit_compile=jit_compile,
    )
    self.train_step = tf.function(
      self.steps.train_step, input_signature=[self.train_iterator.element_spec]
    )
    # Any batch size: an evaluation split ends with its remainder.
    self._eval_step = tf.function(
      self.steps.eval_step, input_signature=self.train_iterator.element_spec[:1]
    )
    writer = (
      tf.summary.create_file_writer if self.chief else lambda _: tf.summary.create_noop_writer()
    )
    self.train_writer = writer(os.path.join(output_dir, "train"))
    self.eval_writer = writer(os.path.join(output_dir, "eval"))

  @property
  def step(self):
    return int(self.optimizer.iterations.numpy())

  def restore(self):
    """Restores the newest readable checkpoint in output_dir, if any; returns the step.

    Another worker than the chief restores its own copy of that checkpoint
    (checkpoints/worker-<i>/), which holds its data position.
    """
    path = checkpoints.newest_readable(os.path.join(self.output_dir, "checkpoints"))
    if path:
      trackables = self._trackables
      if not self.chief:
        own = os.path.join(self.checkpoint_dir, os.path.basename(path))
        if checkpoints.unreadable(own) is None:
          path = own
        else:
          logging.warning("Worker %d has no readable %s: its data starts afresh", self.worker, own)
          trackables = {k: v for k, v in trackables.items() if k != "data"}
      try:
        checkpoints.restore(trackables, path)
      except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise OutputDirError(
          f"checkpoint {path!r} does not match model {self.model_name!r} as "
          f"configured now (were its sizes changed?): {str(e).splitlines()[0]}"
        ) from None
      logging.info("Resumed from %s at step %d", path, self.step)
    if self.chief:
      dropped = truncate_eval_history(self.output_dir, self.step)
      if dropped:
        logging.info(
          "Dropped %d evaluation(s) past step %d from %s",
          dropped,
          self.step,
          figures.history_path(self.output_dir),
        )
    return self.step

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
    if not self.chief:  # the losses took every worker; the rest is the chief's
      return results
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
    if not self.chief:
      return None
    path = os.path.join(self.output_dir, TEST_RESULTS)
    files.write_json(path, dict(results, step=self.step))
    return f"test {self.problem.results_line(results)} at step {self.step}: {path}"

  def write_operative_config(self):
    if self.chief:
      files.write_text(
        os.path.join(self.output_dir, "operative_config.gin"), gin.operative_config_str()
      )

  def export(self, export_dir=None):
    """Writes the serving SavedModel of the model as it is now (default: output_dir/export)."""
    if not self.chief:
      return None
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
      if bool(out.pop("overflow", False)):  # float16: the loss scale was lowered
        continue
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
