"""Vector quantization trained by hard EM, Monte-Carlo soft EM or gradient (§2-3).

Registered bottlenecks (presets of one layer, `VectorQuantizer`):

  hard_em   VQ-VAE with EMA = online k-means (§2.1-2.2): nearest code (Eq. 1),
            EMA of counts and sums (Eq. 3-4) with Laplace smoothing.
  soft_em   Monte-Carlo EM (§3.2): num_samples draws from
            Multinomial(-||z_e - e_j||^2 / temperature) (Eq. 9); decoder input
            the mean of the drawn codes (Eq. 11); EMA over fractional counts.
  vq        the original VQ-VAE: nearest code, codebook learned by the gradient
            of ||sg(z_e) - e||^2 (no EMA).

A training call reads as the algorithm: flatten -> E step -> loss -> all-reduce
of the statistics -> M step -> outputs. The execution path is chosen once when
the layer is made: TensorFlow graph ops by default; `jit_compile=True` compiles
the E step's distances (with the argmin, or the soft E step's logits) and Eq. 11
with XLA, once per input shape, and leaves the soft draws to TensorFlow's op.
BENCHMARKS.md ("Bottlenecks") compares the two paths.

Product quantization (`num_blocks` = B > 1, the DVQ of Kaiser et al. 2018): D is
cut into B slices, each quantized with its own K codes. Per position the codes
combine into one code c = sum_b z_b K^b of num_codes = K^B, which is what the
latent predictor predicts and `embed` maps back.

Not from the paper, both off by default: `init_from_first_batch` (seed the
codebook with batch vectors) and `dead_code_restart_steps` (re-seed codes unused
for that many steps, resetting their EMA state). The batch rows they pick are
drawn from `rows_seed`, a keras.random.SeedGenerator the trainer checkpoints.
"""

import keras
import tensorflow as tf

from t2t_vqem import registry
from t2t_vqem.bottlenecks import base
from t2t_vqem.bottlenecks import equations as eq
from t2t_vqem.bottlenecks import replicas

MODES = ("hard_em", "soft_em", "vq")


class VectorQuantizer(base.Bottleneck):
  """Vector-quantization bottleneck; `mode` is "hard_em", "soft_em" or "vq".

  Call: x [..., D] (D divisible by num_blocks), mask [...]. A training call
  quantizes x with the codebook as it was before the call, then applies the M
  step (assign ops).

  Output (`base.BottleneckOutput`), batch shape [...] = x.shape[:-1]: quantized
  [..., D]; codes int32 [...]; soft_targets float32 [..., num_codes]; draws int32
  [...] (+ [num_blocks] if > 1) (+ [num_samples] in soft_em), index j of block b
  being row j of that block's codebook; loss (beta times Eq. 2's commitment
  loss, plus the codebook loss in vq mode), perplexity and usage (per block, of
  this replica's kept positions; of the global batch in training).

  State, all float32: `codebook` [K, D] (or [B, K, D / B]), trainable in vq mode
  only; `ema_count` [K] (or [B, K]) and `ema_means_sum` (codebook shape), None in
  vq mode. The EMA starts at ema_count = initial_ema_count and ema_means_sum =
  initial_ema_count * codebook, a consistent state (T2T starts its counts at 0,
  which scales unused codes by ~1/epsilon on the first step; initial_ema_count=0
  gives Sonnet's behaviour, unused codes move to 0). The Laplace smoothing uses
  the per-block K (T2T used the total 2^z_size).

  Bad input (besides `base`'s rules; tests/test_fuzz_bottlenecks.py):
    * a row holding a NaN or an Inf is a masked row for the E/M statistics: not
      in the EMA counts and sums, not a seed of `init_from_first_batch` or of a
      dead-code restart, not in perplexity and usage. Its code is a valid code
      and its decoder input that code's (finite) codebook row; the loss counts
      it and is then not finite.
    * a training batch with no kept finite row (all masked, zero rows, or all
      non-finite) is no observation: codebook, ema_count and ema_means_sum
      stay exactly as they were. Eq. 3-4 would still decay counts and sums,
      and with the Laplace smoothing that alone moves every code, with no data.
    * an M step whose result would not be finite (finite rows so large that
      their sums overflow float32) is skipped whole, and a restart or seeding
      whose EMA sum would overflow leaves that code as it was: the state is
      never non-finite.
    * codebook_size = 1 is refused (ValueError "codebook_size=1 is not
      accepted"): one code carries no information.

  Args:
    codebook_size: K, codes per block, >= 2 (the paper: 2^12 for translation,
      2^8 for CIFAR-10).
    mode: "hard_em", "soft_em" or "vq".
    num_samples: m, draws per position in soft_em (ignored otherwise).
    decay: EMA decay lambda in [0, 1] (paper: 0.999).
    epsilon: Laplace smoothing of the counts (paper / T2T: 1e-5).
    beta: weight of the commitment loss (paper: 0.25).
    num_blocks: B, slices of D quantized separately (product quantization).
    temperature: divides the soft E step's logits (1.0 = the paper).
    embedding_dim: optional D; if given the layer is built at construction.
    initial_ema_count: the EMA's pseudo-count per code at the start and after a
      dead-code restart (>= 0; a restart uses 1 if this is 0).
    init_from_first_batch: seed the codebook from random kept vectors of the
      first training batch, before its E step (ours, not the paper's).
    dead_code_restart_steps: if > 0, a code not chosen for this many training
      steps is re-seeded from a random batch vector (ours; 0 = off).
    codebook_initializer: Keras initializer (default T2T's
      variance_scaling(uniform), "uniform unit scaling").
    jit_compile: run the distances, the argmin or logits, and Eq. 11 under XLA.
  """

  fixed_parameters = ()

  def __init__(
    self,
    codebook_size=4096,
    mode="hard_em",
    num_samples=1,
    decay=0.999,
    epsilon=1e-5,
    beta=0.25,
    num_blocks=1,
    temperature=1.0,
    embedding_dim=None,
    initial_ema_count=1.0,
    init_from_first_batch=False,
    dead_code_restart_steps=0,
    codebook_initializer="variance_scaling",
    jit_compile=False,
    **kwargs,
  ):
    super().__init__(embedding_dim=embedding_dim, **kwargs)
    base.check_int("codebook_size", codebook_size, 2, "the number of codes")
    if mode not in MODES:
      raise ValueError(f"mode={mode!r} is not accepted; expected one of {MODES}.")
    base.check_int("num_samples", num_samples, 1, "the number of Monte-Carlo draws")
    base.check_int("num_blocks", num_blocks, 1, "the number of codebook slices")
    base.check_int(
      "dead_code_restart_steps",
      dead_code_restart_steps,
      0,
      "steps a code may go unused before a restart, 0 = off",
    )
    if codebook_size**num_blocks > 2**31 - 1:
      raise ValueError(
        f"codebook_size={codebook_size} with num_blocks={num_blocks} gives "
        f"{codebook_size}^{num_blocks} codes, more than an int32 holds; "
        "accepted: codebook_size ** num_blocks < 2^31."
      )
    self.codebook_size = int(codebook_size)
    self.mode = mode
    self.num_samples = int(num_samples) if mode == "soft_em" else 1
    self._requested_num_samples = int(num_samples)
    self.decay = base.check_float("decay", decay, 0.0, 1.0)
    self.epsilon = base.check_float("epsilon", epsilon, 0.0)
    self.beta = base.check_float("beta", beta, 0.0)
    self.num_blocks = int(num_blocks)
    self.temperature = base.check_float("temperature", temperature, 0.0, low_open=True)
    self.initial_ema_count = base.check_float("initial_ema_count", initial_ema_count, 0.0)
    self.init_from_first_batch = bool(init_from_first_batch)
    self.dead_code_restart_steps = int(dead_code_restart_steps)
    self.codebook_initializer = keras.initializers.get(
      keras.initializers.VarianceScaling(distribution="uniform")
      if codebook_initializer == "variance_scaling"
      else codebook_initializer
    )
    self.jit_compile = bool(jit_compile)
    self.sample_seed = keras.random.SeedGenerator(name="sample_seed")  # soft EM's draws
    if self.init_from_first_batch or self.dead_code_restart_steps:  # the rows they pick
      self.rows_seed = keras.random.SeedGenerator(name="rows_seed")

    # The execution path, chosen once. The M step's ~10 elementwise passes
    # over [K, D] fuse under XLA; its shapes are fixed, so it compiles once.
    # Under jit_compile the GEMM-bound parts run in XLA; the soft E step's draws
    # stay a TF op (tf.random.categorical compiled by XLA is ~100x slower on CPU).
    self._ema_fn = tf.function(self._ema_values, jit_compile=True)
    xla = lambda f: tf.function(f, jit_compile=True) if self.jit_compile else f
    self._scores_fn = xla(eq.nearest_codes_and_scores if mode != "soft_em" else eq.code_logits)
    self._nearest_fn = xla(eq.nearest_codes)
    self._mean_fn = xla(eq.mean_of_codes) if self.jit_compile else eq._fast_mean_of_codes  # pylint: disable=protected-access
    # The M step's statistics: CSR matrix products are faster in graphs; XLA has no CSR.
    self._stats_fn = eq.cluster_statistics if self.jit_compile else eq._fast_cluster_statistics  # pylint: disable=protected-access
    self._build_if_dim_known()

  def _e_step(self, x, codebook):
    """The E step on x [B, N, d]: draws [B, N, S] and, in the hard modes, the
    winning score summed over blocks [N] (None in soft EM)."""
    if self.mode == "soft_em":  # Eq. 9: S draws from the Multinomial
      logits = self._scores_fn(x, codebook, self.temperature)
      return eq.sample_codes(logits, self.num_samples, seed=self.sample_seed), None
    idx, score = self._scores_fn(x, codebook)  # Eq. 1: the nearest code
    return idx[..., tf.newaxis], tf.reduce_sum(score, axis=0)

  @property
  def num_codes(self):
    return self.codebook_size**self.num_blocks

  # -- state --------------------------------------------------------------------

  def _build_weights(self, dim):
    if dim % self.num_blocks:
      raise ValueError(
        f"num_blocks={self.num_blocks} does not divide the input dimension "
        f"D={dim}; D must be a multiple of num_blocks."
      )
    self.block_dim = dim // self.num_blocks
    k, b = self.codebook_size, self.num_blocks
    cb_shape = (k, dim) if b == 1 else (b, k, self.block_dim)
    count_shape = (k,) if b == 1 else (b, k)
    self.codebook = self.add_weight(
      name="codebook",
      shape=cb_shape,
      dtype="float32",
      initializer=self.codebook_initializer,
      trainable=self.mode == "vq",
      autocast=False,
    )
    self.ema_count = self.ema_means_sum = None
    if self.mode != "vq":
      c0 = self.initial_ema_count
      self.ema_count = self.add_weight(
        name="ema_count",
        shape=count_shape,
        dtype="float32",
        initializer=keras.initializers.Constant(c0),
        trainable=False,
        autocast=False,
      )
      self.ema_means_sum = self.add_weight(
        name="ema_means_sum",
        shape=cb_shape,
        dtype="float32",
        initializer=lambda shape, dtype=None: c0 * self.codebook.value,
        trainable=False,
        autocast=False,
      )
    if self.init_from_first_batch:
      self.initialized = self.add_weight(
        name="initialized",
        shape=(),
        dtype="float32",
        initializer="zeros",
        trainable=False,
        autocast=False,
      )
    if self.dead_code_restart_steps:
      self.steps_unused = self.add_weight(
        name="steps_unused",
        shape=count_shape,
        dtype="float32",
        initializer="zeros",
        trainable=False,
        autocast=False,
      )

  def _blocks(self, v):
    """A variable's value in [B, K, d] (or [B, K]) layout."""
    v = tf.convert_to_tensor(v)
    return v[tf.newaxis] if self.num_blocks == 1 else v

  def _unblocks(self, v):
    return v[0] if self.num_blocks == 1 else v

  def _to_blocks(self, flat):
    """[N, D] -> [B, N, d]."""
    if self.num_blocks == 1:
      return flat[tf.newaxis]
    return tf.transpose(tf.reshape(flat, [-1, self.num_blocks, self.block_dim]), [1, 0, 2])

  def _from_blocks(self, xb):
    """[B, N, d] -> [N, D]."""
    if self.num_blocks == 1:
      return xb[0]
    return tf.reshape(tf.transpose(xb, [1, 0, 2]), [-1, self.embedding_dim])

  def _combine(self, draws):
    """Per-block draws [B, N, S] -> codes of the product [N, S], sum_b z_b K^b."""
    powers = tf.constant([self.codebook_size**b for b in range(self.num_blocks)], tf.int32)
    return tf.reduce_sum(draws * powers[:, tf.newaxis, tf.newaxis], axis=0)

  # -- the interface ---------------------------------------------------------------

  def call(self, x, training=None, mask=None):
    x, flat, batch_shape, weights, keep = self._flatten(x, mask)
    # The statistics (M step, seeding, metrics) see the kept finite rows only;
    # the loss sees every kept row, so a non-finite one makes it non-finite.
    keep, stat_weights = base.finite_rows(flat, keep)
    training = bool(training)
    ctx = replicas.context() if training else None
    if training and self.init_from_first_batch:
      self._initialize_from_batch(ctx, tf.stop_gradient(flat), keep)
    xb = tf.stop_gradient(self._to_blocks(flat))  # [B, N, d]
    codebook = self._blocks(self.codebook)  # [B, K, d], trainable in vq mode
    frozen = tf.stop_gradient(codebook)

    draws, score = self._e_step(xb, frozen)  # E step: [B, N, S], [N] or None
    # Eq. 11 (Eq. 1 for one draw); only in vq mode is the codebook trainable.
    q = self._from_blocks(self._mean_fn(codebook, draws))
    loss = self.beta * eq.commitment_loss(flat, q, score, weights)  # Eq. 2
    if self.mode == "vq":
      loss += eq.codebook_loss(flat, q, score, weights)

    update = training and self.mode != "vq"
    if update:  # M-step statistics of the global batch
      counts, sums = replicas.all_reduce_sum(
        ctx, self._stats_fn(xb, draws, self.codebook_size, keep)
      )
      self._ema_step(counts, sums, frozen)
    else:
      counts = replicas.all_reduce_sum(
        ctx, eq.code_histogram(draws, self.codebook_size, stat_weights)
      )
    if training and self.dead_code_restart_steps:
      self._restart_dead_codes(ctx, counts, tf.stop_gradient(flat), keep)
    perplexity, usage = eq.perplexity_and_usage(counts)
    return self._outputs(x, q, draws, batch_shape, loss, perplexity, usage)

  def _outputs(self, x, q, draws, batch_shape, loss, perplexity, usage):
    combined = self._combine(draws)  # [N, S]
    soft = eq.mean_one_hot(combined, self.num_codes)  # [N, num_codes]
    codes = _most_frequent(combined)
    layout = tf.transpose(draws, [1, 0, 2])  # [N, B, S]
    if self.mode != "soft_em":
      layout = layout[..., 0]
    if self.num_blocks == 1:
      layout = layout[:, 0]

    def unflatten(t):
      return tf.reshape(t, tf.concat([batch_shape, tf.shape(t)[1:]], axis=0))

    return base.BottleneckOutput(
      quantized=eq.straight_through(x, tf.reshape(q, tf.shape(x))),
      codes=unflatten(codes),
      soft_targets=unflatten(soft),
      loss=loss,
      perplexity=perplexity,
      usage=usage,
      draws=unflatten(layout),
    )

  def embed(self, codes):
    """codes int [...] in [0, num_codes) -> the codebook rows they name [..., D] (Eq. 1)."""
    codes = tf.convert_to_tensor(codes, tf.int32)
    codebook = self._blocks(self.codebook)
    digits = [(codes // self.codebook_size**b) % self.codebook_size for b in range(self.num_blocks)]
    return tf.concat([tf.gather(codebook[b], z) for b, z in enumerate(digits)], axis=-1)

  def encode(self, x):
    """The nearest code (Eq. 1) of each position of x [..., D], in any mode: int32 [...].

    Deterministic and without update: the most probable code also in soft EM.
    """
    _, flat, batch_shape, _, _ = self._flatten(x, None)
    z = self._nearest_fn(self._to_blocks(flat), self._blocks(self.codebook))  # [B, N]
    return tf.reshape(self._combine(z[..., tf.newaxis])[:, 0], batch_shape)

  # -- the M step and the options ----------------------------------------------------

  def _ema_values(self, ema_count, ema_sum, counts, sums, old_codebook):
    """The EMA state and codebook after one M step (Eq. 3-4).

    A batch with no kept finite position is no observation and leaves them as
    they were (no decay); so does a step whose result would not be finite
    (sums that overflow float32), the state never becomes non-finite.
    """
    new = eq.ema_update(ema_count, ema_sum, counts, sums, self.decay, self.epsilon, old_codebook)
    ok = tf.reduce_sum(counts) > 0.0
    for t in new:
      ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(t)))
    return tuple(tf.where(ok, a, b) for a, b in zip(new, (ema_count, ema_sum, old_codebook)))

  def _ema_step(self, counts, sums, old_codebook):
    """The EMA M step (Eq. 3-4) from the all-replica batch statistics."""
    count, means_sum, codebook = self._ema_fn(
      self._blocks(self.ema_count), self._blocks(self.ema_means_sum), counts, sums, old_codebook
    )
    self.ema_count.assign(self._unblocks(count))
    self.ema_means_sum.assign(self._unblocks(means_sum))
    self.codebook.assign(self._unblocks(codebook))

  def _candidates(self, ctx, flat, keep):
    """K random kept batch vectors [B, K, d], identical on all replicas (each picks
    from its own rows, from `rows_seed`; the first replica with data's are taken)."""
    seed = replicas.next_seed(self.rows_seed)
    rows, has_data = replicas.sample_rows(flat, keep, self.codebook_size, seed)
    rows, has_data = replicas.broadcast_from_first_with_data(ctx, rows, has_data)
    return self._to_blocks(rows), has_data

  def _reset_codes(self, which, candidates, count):
    """Codes where `which` [B, K]: codebook <- candidates [B, K, d], EMA state <-
    (count, count * candidates); every replica assigns the same values. A code
    whose new EMA sum would not be finite keeps its state."""
    which = tf.logical_and(which, tf.reduce_all(tf.math.is_finite(count * candidates), -1))
    sel = which[..., tf.newaxis]
    self.codebook.assign(self._unblocks(tf.where(sel, candidates, self._blocks(self.codebook))))
    if self.mode != "vq":
      ema_count = self._blocks(self.ema_count)
      self.ema_count.assign(self._unblocks(tf.where(which, count, ema_count)))
      self.ema_means_sum.assign(
        self._unblocks(tf.where(sel, count * candidates, self._blocks(self.ema_means_sum)))
      )

  def _initialize_from_batch(self, ctx, flat, keep):
    """Seed every code from the first training batch (option)."""
    candidates, has_data = self._candidates(ctx, flat, keep)
    do_init = tf.logical_and(self.initialized < 0.5, has_data)
    which = tf.fill([self.num_blocks, self.codebook_size], do_init)
    self._reset_codes(which, candidates, self.initial_ema_count)
    self.initialized.assign(tf.maximum(self.initialized, tf.cast(do_init, tf.float32)))

  def _restart_dead_codes(self, ctx, counts, flat, keep):
    """Re-seed codes unused for dead_code_restart_steps steps (option)."""
    steps = self._blocks(self.steps_unused)
    has_data = tf.reduce_sum(counts) > 0.0
    steps = tf.where(has_data, tf.where(counts > 0.0, 0.0, steps + 1.0), steps)
    candidates, found = self._candidates(ctx, flat, keep)
    dead = tf.logical_and(steps >= float(self.dead_code_restart_steps), found)
    # A restarted code gets one pseudo-observation (or initial_ema_count).
    self._reset_codes(dead, candidates, self.initial_ema_count or 1.0)
    self.steps_unused.assign(self._unblocks(tf.where(dead, 0.0, steps)))

  def get_config(self):
    config = super().get_config()
    config.update(
      codebook_size=self.codebook_size,
      mode=self.mode,
      num_samples=self._requested_num_samples,
      decay=self.decay,
      epsilon=self.epsilon,
      beta=self.beta,
      num_blocks=self.num_blocks,
      temperature=self.temperature,
      initial_ema_count=self.initial_ema_count,
      init_from_first_batch=self.init_from_first_batch,
      dead_code_restart_steps=self.dead_code_restart_steps,
      codebook_initializer=keras.initializers.serialize(self.codebook_initializer),
      jit_compile=self.jit_compile,
    )
    for name in self.fixed_parameters:
      config.pop(name)
    return config


def _most_frequent(draws):
  """The most frequent of each row's draws [N, S] (ties: the lowest code): int32 [N]."""
  if draws.shape[-1] == 1:
    return draws[:, 0]
  same = tf.cast(tf.equal(draws[:, :, tf.newaxis], draws[:, tf.newaxis, :]), tf.int32)
  counts = tf.reduce_sum(same, axis=-1)  # [N, S]: how often each draw occurs
  best = tf.reduce_max(counts, axis=-1, keepdims=True)
  return tf.reduce_min(tf.where(counts == best, draws, tf.int32.max), axis=-1)


@registry.register_bottleneck("hard_em")
class HardEm(VectorQuantizer):
  """VQ-VAE with EMA = hard EM (§2.2): nearest code (Eq. 1), EMA M step (Eq. 3-4)."""

  fixed_parameters = ("mode", "num_samples", "temperature")

  def __init__(self, codebook_size=4096, **kwargs):
    super().__init__(codebook_size, mode="hard_em", **kwargs)


@registry.register_bottleneck("soft_em")
class SoftEm(VectorQuantizer):
  """Monte-Carlo soft EM (§3.2): num_samples draws, Eq. 11's mean, fractional EMA."""

  fixed_parameters = ("mode",)

  def __init__(self, codebook_size=4096, num_samples=10, **kwargs):
    super().__init__(codebook_size, mode="soft_em", num_samples=num_samples, **kwargs)


@registry.register_bottleneck("vq")
class Vq(VectorQuantizer):
  """The original VQ-VAE (van den Oord et al.): codebook learned by gradient, no EMA."""

  fixed_parameters = ("mode", "num_samples", "temperature", "decay", "epsilon", "initial_ema_count")

  def __init__(self, codebook_size=4096, **kwargs):
    super().__init__(codebook_size, mode="vq", **kwargs)
