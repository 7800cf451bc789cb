"""Discretization bottlenecks: hard EM (VQ-VAE + EMA), Monte-Carlo soft EM, VQ.

The paper is "Theory and Experiments on Vector Quantized Autoencoders" (Roy,
Vaswani, Neelakantan, Parmar 2018). How its equations map to this module:

========================  ====================================================
Paper                     Code
========================  ====================================================
Eq. 1, Eq. 7 (E step,     `nearest_codes`: argmin_j ||z_e - e_j||^2, found as
nearest neighbour)        argmax_j (z_e . e_j - ||e_j||^2 / 2) from one GEMM.
                          `squared_distances`: the clamped distances themselves.
Eq. 2 (loss)              `commitment_loss` (beta * ||z_e - sg(z_q)||^2,
                          averaged over kept elements; in hard modes its value
                          is ||z_e||^2 - 2 * the E step's winning score,
                          `distortion_loss`); `straight_through` (the
                          decoder's input z_q, gradient copied to z_e).
Eq. 3-4 (EMA of counts    `cluster_statistics` (batch counts and sums by
and embeddings)           segment sums) + `ema_update` (decay, Laplace
                          smoothing of the counts with epsilon, as in T2T).
Eq. 8 (k-means M step)    `ema_update` with decay = 0 (and epsilon -> 0).
Eq. 9 / §3.2 E step       `code_logits` + `sample_codes`: m draws from
                          Multinomial(logits = -||z_e - e_j||^2 / temperature).
§3.2 M step               `cluster_statistics` with fractional counts 1/m.
Eq. 11 (decoder input)    mean of the m drawn embeddings (`VectorQuantizer`,
                          mode "soft_em").
§3.2 latent predictor     `soft_targets`: mean of the m sampled one-hots
labels (label smoothing)  (`mean_one_hot`).
van den Oord et al. VQ    mode "vq": codebook trained by the gradient of
                          ||sg(z_e) - e||^2 (`codebook_loss`).
§5.1.1 baselines          `GumbelSoftmaxBottleneck` (Jang et al. / Maddison
                          et al.), `ImprovedSemanticHashing` (Kaiser & Bengio
                          2018).
Latent Transformer DVQ    `num_blocks > 1`: product (sliced) quantization, one
(Kaiser et al. 2018)      codebook per slice of D / num_blocks.
========================  ====================================================

All bottlenecks return a `BottleneckOutput` (a NamedTuple, so it passes through
`tf.function`, `tf.nest` and `strategy.run`).

Implementation notes
--------------------
* Distances are computed in float32 whatever the layer's dtype policy (e.g.
  mixed_float16), as ||x||^2 - 2 x.e + ||e||^2 with one GEMM; the [N, K, D]
  difference tensor is never formed and no square root is taken. Only the
  x-dependent part (x.e - ||e||^2/2) is needed for argmin and for the softmax
  of the soft E step (softmax is invariant to a per-row shift), so the row
  norms ||x||^2 are added only where real distances are wanted
  (`squared_distances`, clamped at 0).
* The draws (one per position in hard EM, m in soft EM) form a sparse CSR
  matrix C [N, K] of 1/m weights (`_draw_matrix`): the EMA sums are C^T x
  and the soft E step's mean of m codes (Eq. 11) is C e, both products of
  tf.raw_ops.SparseMatrixMatMul; the counts are a segment sum. No [N, K]
  one-hot matmul, no [N, S, D] gather. The straight-through output is a
  custom-gradient identity (forward value exactly z_q, no extra passes), and
  the hard modes' commitment loss reads x once instead of writing x - z_q
  (`distortion_loss`): at small K a write pass over [N, D] is a large share
  of the step beyond the distance GEMM (benchmarks/bottleneck.py).
* On CPU, training steps of hard_em and soft_em run everything after the
  distance GEMM in one fused kernel (`vq_kernel.py`, `vq_kernel.cc`): the E
  step (argmax, or m inverse-CDF draws per row from float32
  probabilities), Eq. 11 over each row's distinct drawn codes, the rows'
  distortions for Eq. 2 and the M step's counts and sums, in one pass over
  the rows, with deterministic sums. The functions above are the
  TensorFlow-ops path for the same computation: used with
  `fused_kernel=False`, in "vq" mode, outside training and wherever the
  kernel does not build.
* The EMA M step is always compiled with XLA (its shapes are fixed by K and
  D, so it compiles once per layer): it fuses about ten elementwise passes
  over the [K, D] state (benchmarks/layer_versions.py measures what such
  changes save).
* `jit_compile=True` compiles the distance GEMM with XLA (on the TF-ops
  path the whole E step: GEMM + argmax or logits, and the soft mean): much
  faster on this project's CPUs for large codebooks, but XLA compiles once
  per distinct input shape (see benchmarks/bottleneck.py).
* Not from the paper, both off by default: `init_from_first_batch` (seed the
  codebook with batch vectors) and `dead_code_restart_steps` (re-seed codes
  unused for that many steps, resetting their EMA state).
* Replicas: the batch counts and sums are all-reduced (SUM) in replica context
  before the EMA, and every replica assigns the same values to its own copy of
  the (aggregation="none") EMA variables; random choices (codebook
  initialisation, dead-code restart) are broadcast from one replica, so all
  replicas keep identical codebooks.
* Padding positions (mask False / 0) never touch the codebook statistics nor
  the metrics and losses.
* Statistics are updated only when `training=True`.
"""

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from t2t_vqem.layers import vq_kernel

MODES = ("hard_em", "soft_em", "vq")


class BottleneckOutput(NamedTuple):
  """What every bottleneck in this module returns.

  Attributes:
    quantized: the decoder input, same shape as x, straight-through: its
      forward value is the quantized vector and its gradient flows unchanged
      to x (for `ImprovedSemanticHashing` it is the dense embedding of the
      bits).
    indices: int32 code indices (shape documented by each layer).
    soft_targets: float32 labels for the latent predictor, the mean of the
      sampled one-hots over the codebook (§3.2), an exact one-hot in hard
      modes. Masked positions are not zeroed; the predictor's loss masks them.
      Inside a `tf.function` it costs nothing unless it is used.
    loss: float32 scalar auxiliary loss to add to the model loss (beta times
      the commitment loss of Eq. 2; plus the codebook loss in "vq" mode).
    perplexity: float32 scalar, exp(entropy) of the batch code histogram
      over kept positions (mean over blocks); from 1 to codebook_size.
    usage: float32 scalar, the fraction of codes chosen at least once in the
      batch (mean over blocks).
    In training under a tf.distribute strategy, perplexity and usage are over
    the global (all-replica) batch; otherwise over the local batch. Both are
    meant for TensorBoard summaries.
  """

  quantized: tf.Tensor
  indices: tf.Tensor
  soft_targets: tf.Tensor
  loss: tf.Tensor
  perplexity: tf.Tensor
  usage: tf.Tensor


# --------------------------------------------------------------------------
# Plain functions (stateless). Shapes use B = num_blocks, N = positions,
# K = codebook size per block, d = block dimension, S = num_samples.
# --------------------------------------------------------------------------


def _matmul_codebook(x, codebook):
  """x: [B, N, d], codebook: [B, K, d] -> x . e^T: [B, N, K] (one GEMM)."""
  if x.shape[0] == 1:
    return tf.matmul(x[0], codebook[0], transpose_b=True)[tf.newaxis]
  return tf.matmul(x, codebook, transpose_b=True)


def half_shifted_scores(x, codebook):
  """x . e_j - ||e_j||^2 / 2, i.e. -||x - e_j||^2 / 2 up to a per-row constant.

  Shared by the E steps of Eq. 1 / Eq. 7 (argmax of it is the argmin of the
  distance) and of §3.2 (2 * scores / T are the Multinomial logits).

  Args:
    x: float32 [B, N, d].
    codebook: float32 [B, K, d].

  Returns:
    float32 [B, N, K].
  """
  half_norms = 0.5 * tf.reduce_sum(tf.square(codebook), axis=-1)  # [B, K]
  return _matmul_codebook(x, codebook) - half_norms[:, tf.newaxis, :]


def squared_distances(x, codebook):
  """||x_i - e_j||^2 for all i, j (the quantity minimised in Eq. 1 and Eq. 7).

  Computed as ||x||^2 - 2 x.e + ||e||^2 in float32 and clamped at 0 (the
  expansion can round below zero); never forms [N, K, D].

  Args:
    x: [N, D] or [B, N, d].
    codebook: [K, D] or [B, K, d] (same rank as x).

  Returns:
    float32 [N, K] or [B, N, K], >= 0.
  """
  x = tf.cast(x, tf.float32)
  codebook = tf.cast(codebook, tf.float32)
  squeeze = x.shape.rank == 2
  if squeeze:
    x, codebook = x[tf.newaxis], codebook[tf.newaxis]
  x_norms = tf.reduce_sum(tf.square(x), axis=-1, keepdims=True)  # [B, N, 1]
  d2 = tf.maximum(x_norms - 2.0 * half_shifted_scores(x, codebook), 0.0)
  return d2[0] if squeeze else d2


def nearest_codes(x, codebook):
  """E step of hard EM, Eq. 1 / Eq. 7: argmin_j ||x_i - e_j||^2.

  Args:
    x: float32 [B, N, d].
    codebook: float32 [B, K, d].

  Returns:
    int32 [B, N].
  """
  return tf.argmax(
      half_shifted_scores(x, codebook), axis=-1, output_type=tf.int32)


def nearest_codes_and_scores(x, codebook):
  """`nearest_codes` and the winning score x . e_z - ||e_z||^2 / 2 per row.

  The score gives the distortion without another pass over x - e_z:
  ||x - e_z||^2 = ||x||^2 - 2 * score (see `distortion_loss`).

  Args:
    x: float32 [B, N, d].
    codebook: float32 [B, K, d].

  Returns:
    (int32 [B, N], float32 [B, N]).
  """
  scores = half_shifted_scores(x, codebook)
  idx = tf.argmax(scores, axis=-1, output_type=tf.int32)
  return idx, tf.gather(scores, idx, batch_dims=2)


def code_logits(x, codebook, temperature=1.0):
  """Logits of the soft E step (§3.2): -||x_i - e_j||^2 / temperature.

  Returned up to a per-row additive constant (-||x_i||^2 / temperature), which
  leaves the Multinomial / softmax unchanged and avoids the cancellation of
  adding and subtracting ||x||^2.

  Args:
    x: float32 [B, N, d].
    codebook: float32 [B, K, d].
    temperature: positive float.

  Returns:
    float32 [B, N, K].
  """
  return half_shifted_scores(x, codebook) * (2.0 / temperature)


def sample_codes(logits, num_samples, seed=None):
  """Monte-Carlo E step (§3.2): num_samples draws from Multinomial(logits).

  Args:
    logits: float32 [B, N, K].
    num_samples: int, m in the paper.
    seed: optional op seed.

  Returns:
    int32 [B, N, num_samples].
  """
  num_blocks = logits.shape[0]
  k = tf.shape(logits)[-1]
  flat = tf.reshape(logits, [-1, k])
  draws = tf.random.categorical(
      flat, num_samples, dtype=tf.int32, seed=seed)
  return tf.reshape(draws, [num_blocks, -1, num_samples])


def mean_one_hot(indices, depth):
  """Mean over the last axis of one_hot(indices): the §3.2 soft targets.

  Built with a scatter so [..., S, K] is never formed.

  Args:
    indices: int32 [..., S].
    depth: K.

  Returns:
    float32 [..., K], rows sum to 1.
  """
  num_samples = indices.shape[-1]
  if num_samples == 1:
    return tf.one_hot(indices[..., 0], depth, dtype=tf.float32)
  lead = tf.shape(indices)[:-1]
  flat = tf.reshape(indices, [-1, num_samples])
  rows = tf.shape(flat)[0]
  row_ids = tf.repeat(tf.range(rows), num_samples)
  scatter_idx = tf.stack([row_ids, tf.reshape(flat, [-1])], axis=1)
  updates = tf.fill([rows * num_samples], 1.0 / num_samples)
  dense = tf.scatter_nd(scatter_idx, updates, tf.stack([rows, depth]))
  return tf.reshape(dense, tf.concat([lead, [depth]], axis=0))


def _block_segments(indices, codebook_size):
  """indices [B, N, S] -> segment ids b * K + j over all blocks."""
  offsets = tf.range(indices.shape[0], dtype=tf.int32)
  return indices + offsets[:, tf.newaxis, tf.newaxis] * codebook_size


def _histogram(segments, num_segments, weights=None):
  """Weighted histogram of segment ids [B, N, S]: weight w_i / S per draw."""
  num_samples = segments.shape[-1]
  if weights is None:
    draw_w = tf.fill(tf.shape(segments), 1.0 / num_samples)
  else:
    row_w = tf.cast(weights, tf.float32) / num_samples
    draw_w = tf.broadcast_to(row_w[tf.newaxis, :, tf.newaxis],
                             tf.shape(segments))
  return tf.math.unsorted_segment_sum(
      tf.reshape(draw_w, [-1]), tf.reshape(segments, [-1]), num_segments)


def code_histogram(indices, codebook_size, weights=None):
  """Code counts [B, K] of indices [B, N, S] (each draw weighs w_i / S)."""
  num_blocks = indices.shape[0]
  counts = _histogram(_block_segments(indices, codebook_size),
                      num_blocks * codebook_size, weights)
  return tf.reshape(counts, [num_blocks, codebook_size])


def _draw_matrix(indices, codebook_size, keep=None, by_code=False):
  """The draws [B, N, S] as a sparse CSR matrix C [B * N, B * K] of 1/S weights.

  Row b * N + i holds 1/S at column b * K + z_i^l for every draw l (repeated
  draws add up), so C @ codebook is the mean of the drawn codes (Eq. 11) and
  C^T @ x the M step's sums. Rows not kept are empty. With by_code, C^T
  itself (its entries sorted by code): the M step multiplies it rather than
  C with transpose_a=True, which on CPU is faster at small K but sums in a
  varying order from run to run. On CPU the CSR products are faster than
  sparse segment reductions over the draws (benchmarks/bottleneck.py
  --sums), and never form the [N, K] one-hot.
  """
  num_blocks, num_samples = indices.shape[0], indices.shape[-1]
  n = tf.shape(indices)[1]
  codes = tf.reshape(_block_segments(indices, codebook_size), [-1])
  positions = tf.repeat(tf.range(num_blocks * n), num_samples)  # in order
  if keep is not None:
    kept = tf.repeat(tf.tile(keep, [num_blocks]), num_samples)
    codes = tf.boolean_mask(codes, kept)
    positions = tf.boolean_mask(positions, kept)
  rows, cols = positions, codes
  shape = [num_blocks * n, num_blocks * codebook_size]
  if by_code:
    perm = tf.argsort(codes)
    rows, cols = tf.gather(codes, perm), tf.gather(positions, perm)
    shape = shape[::-1]
  return tf.raw_ops.SparseTensorToCSRSparseMatrix(
      indices=tf.cast(tf.stack([rows, cols], axis=1), tf.int64),
      values=tf.fill(tf.shape(rows), 1.0 / num_samples),
      dense_shape=tf.cast(tf.stack(shape), tf.int64))


def cluster_statistics(x, indices, codebook_size, keep=None):
  """Batch terms of the EMA (Eq. 3-4) / M steps (Eq. 8 and §3.2).

  counts[b, j] = sum_{i kept} 1 / S * #{l : z_i^l = j}
  sums[b, j]   = sum_{i kept} 1 / S * #{l : z_i^l = j} * x_i
  With S = 1 these are the hard counts and sums of Eq. 8; with S samples they
  are the fractional counts of the Monte-Carlo M step. The counts are
  `code_histogram`, the sums the product C^T x with the draws' sparse matrix
  (`_draw_matrix`): no [N, K] one-hot, no [N, S, d] copy, and padding rows
  are left out, never rescaled.

  Args:
    x: float32 [B, N, d].
    indices: int32 [B, N, S].
    codebook_size: K.
    keep: optional bool [N] (False for padding). Rows not kept are ignored
      even if their x is not finite.

  Returns:
    counts float32 [B, K], sums float32 [B, K, d].
  """
  num_blocks, dim = x.shape[0], x.shape[-1]
  counts = code_histogram(
      indices, codebook_size, None if keep is None else tf.cast(keep, tf.float32))
  sums = tf.raw_ops.SparseMatrixMatMul(  # C^T x, deterministic
      a=_draw_matrix(indices, codebook_size, keep, by_code=True),
      b=tf.reshape(x, [-1, dim]))  # x row b * N + i
  return counts, tf.reshape(sums, [num_blocks, codebook_size, dim])


def _gemm_and_half_norms(x, codebook):
  """x [N, d], codebook [K, d] -> (x e^T [N, K], ||e_j||^2 / 2 [K]): the
  inputs of the fused kernel (vq_kernel.quantize_rows)."""
  return (tf.matmul(x, codebook, transpose_b=True),
          0.5 * tf.reduce_sum(tf.square(codebook), axis=-1))


def _gather_mean_of_codes(codebook, indices):
  """Eq. 11 as gather + mean: forms [B, N, S, d] unless XLA fuses it (it does,
  under jit_compile, where the CSR product of `mean_of_codes` cannot run)."""
  return tf.reduce_mean(tf.gather(codebook, indices, batch_dims=1), axis=2)


def mean_of_codes(codebook, indices):
  """Eq. 11: z_q(x_i) = (1/m) sum_l e_{z_i^l}, per block.

  Args:
    codebook: float32 [B, K, d].
    indices: int32 [B, N, S].

  Returns:
    float32 [B, N, d]. For S = 1 a plain gather (the chosen code, Eq. 1).
  """
  num_blocks, k, dim = codebook.shape
  num_samples = indices.shape[-1]
  if num_samples == 1:
    if num_blocks == 1:
      return tf.gather(codebook[0], indices[0, :, 0])[tf.newaxis]
    return tf.gather(codebook, indices[..., 0], batch_dims=1)
  mean = tf.raw_ops.SparseMatrixMatMul(
      a=_draw_matrix(indices, k), b=tf.reshape(codebook, [num_blocks * k, dim]))
  return tf.reshape(mean, [num_blocks, -1, dim])


def ema_update(ema_count, ema_means_sum, batch_count, batch_sum, decay,
               epsilon, old_codebook=None):
  """EMA M step, Eq. 3-4, with the Laplace smoothing of T2T.

    ema_count     <- decay * ema_count     + (1 - decay) * batch_count
    ema_means_sum <- decay * ema_means_sum + (1 - decay) * batch_sum
    n             =  sum_j ema_count_j                     (per block)
    smoothed_j    =  (ema_count_j + epsilon) / (n + K * epsilon) * n
    codebook_j    =  ema_means_sum_j / smoothed_j

  With decay = 0 and epsilon = 0 this is the k-means M step, Eq. 8. Where
  smoothed_j is 0 (epsilon = 0 and code j never counted, or n = 0) the old
  codebook row is kept (or 0 if `old_codebook` is None).

  Args:
    ema_count: float32 [B, K].
    ema_means_sum: float32 [B, K, d].
    batch_count: float32 [B, K].
    batch_sum: float32 [B, K, d].
    decay: float in [0, 1].
    epsilon: float >= 0.
    old_codebook: optional float32 [B, K, d].

  Returns:
    (new_count [B, K], new_means_sum [B, K, d], new_codebook [B, K, d]).
  """
  new_count = decay * ema_count + (1.0 - decay) * batch_count
  new_sum = decay * ema_means_sum + (1.0 - decay) * batch_sum
  k = tf.cast(tf.shape(new_count)[-1], tf.float32)
  n = tf.reduce_sum(new_count, axis=-1, keepdims=True)
  smoothed = (new_count + epsilon) / (n + k * epsilon) * n
  positive = smoothed > 0.0
  safe = tf.where(positive, smoothed, tf.ones_like(smoothed))
  codebook = new_sum / safe[..., tf.newaxis]
  fallback = (tf.zeros_like(codebook) if old_codebook is None
              else old_codebook)
  codebook = tf.where(positive[..., tf.newaxis], codebook, fallback)
  return new_count, new_sum, codebook


def perplexity_and_usage(counts):
  """Health metrics from a code histogram.

  Args:
    counts: float32 [B, K] (masked positions excluded).

  Returns:
    (perplexity, usage) float32 scalars: exp of the entropy of counts / total,
    and the fraction of codes with a positive count, both averaged over B.
  """
  total = tf.reduce_sum(counts, axis=-1, keepdims=True)
  probs = tf.math.divide_no_nan(counts, total)
  entropy = -tf.reduce_sum(
      tf.math.multiply_no_nan(tf.math.log(probs), probs), axis=-1)
  perplexity = tf.reduce_mean(tf.exp(entropy))
  usage = tf.reduce_mean(tf.cast(counts > 0.0, tf.float32))
  return perplexity, usage


@tf.custom_gradient
def _straight_through_op(x, quantized):
  def grad(dy):
    return dy, None
  return tf.identity(quantized), grad


def straight_through(x, quantized):
  """z_q with the straight-through gradient (§2.1): value z_q, gradient to x.

  The forward value is z_q exactly (sg(z_q) + x - sg(x) without the two extra
  passes); the backward pass copies the incoming gradient to x and gives z_q
  (hence the codebook) none.
  """
  return _straight_through_op(x, tf.cast(quantized, x.dtype))


def distortion_loss(x, quantized, score=None, weights=None, rows=None):
  """Mean over kept positions and features of ||x_i - q_i||^2.

  Given the E step's score_i = x_i . q_i - ||q_i||^2 / 2 (for one code, the
  winning score of `nearest_codes_and_scores`), the value is
  ||x_i - q_i||^2 = ||x_i||^2 - 2 score_i, so the forward pass only reads x
  instead of writing x - q and reading it back. The expansion cancels in
  float32 (absolute error ~1e-7 ||x_i||^2 per row); the value is clamped
  at 0.
  Given `rows`, the per-row values already computed (the fused kernel's),
  they are summed. Otherwise the value is computed directly. Either way the
  gradient is
  that of the direct formula: 2 w_i (x_i - q_i) / (D sum_i w_i) to x and its
  negative to q.

  Args:
    x: float32 [N, D].
    quantized: float32 [N, D].
    score: optional float32 [N], x_i . q_i - ||q_i||^2 / 2.
    weights: optional float32 [N] (0 for padding; padding rows may hold
      non-finite values).
    rows: optional float32 [N], ||x_i - q_i||^2 (finite where weights > 0).

  Returns:
    float32 scalar (0 when every row is padding).
  """

  def value(x, quantized):
    if rows is not None:
      if weights is None:
        return tf.reduce_sum(rows)
      per_row = rows
    elif score is None:
      if weights is None:  # l2_loss reduces in the same pass that squares
        return 2.0 * tf.nn.l2_loss(x - quantized)
      per_row = tf.reduce_sum(tf.math.squared_difference(x, quantized), -1)
    elif weights is None:
      return tf.maximum(2.0 * (tf.nn.l2_loss(x) - tf.reduce_sum(score)), 0.0)
    else:  # reduce_euclidean_norm: one read of x, no [N, D] temporary
      norms = tf.math.reduce_euclidean_norm(x, axis=-1)
      per_row = tf.maximum(tf.square(norms) - 2.0 * score, 0.0)
    return tf.reduce_sum(tf.where(weights > 0.0, per_row * weights, 0.0))

  @tf.custom_gradient
  def loss(x, quantized):
    dim = tf.cast(tf.shape(x)[-1], tf.float32)
    kept = (tf.cast(tf.shape(x)[0], tf.float32) if weights is None
            else tf.reduce_sum(weights))
    denom = kept * dim

    def grad(dy):
      g = (x - quantized) * tf.math.divide_no_nan(2.0 * dy, denom)
      if weights is not None:
        w = weights[:, tf.newaxis]
        g = tf.where(w > 0.0, g * w, 0.0)
      return g, -g

    return tf.math.divide_no_nan(value(x, quantized), denom), grad

  return loss(x, quantized)


def commitment_loss(x, quantized, score=None, weights=None, rows=None):
  """Commitment term of Eq. 2: mean ||z_e - sg(z_q)||^2 (squared, as in T2T).

  Averaged over the kept positions and the feature dimension; the gradient
  reaches x only. `score` and `rows` as in `distortion_loss`.
  """
  return distortion_loss(x, tf.stop_gradient(quantized), score, weights, rows)


def codebook_loss(x, quantized, score=None, weights=None):
  """VQ-VAE codebook term (van den Oord et al.): mean ||sg(z_e) - e||^2."""
  return distortion_loss(tf.stop_gradient(x), quantized, score, weights)


def saturating_sigmoid(x):
  """max(0, min(1, 1.2 * sigmoid(x) - 0.1)) (Kaiser & Bengio 2018)."""
  return tf.clip_by_value(1.2 * tf.sigmoid(x) - 0.1, 0.0, 1.0)


def bits_to_int(bits):
  """Little-endian bits [..., num_bits] (0/1) -> int32 [...]."""
  num_bits = bits.shape[-1]
  powers = tf.constant([2**i for i in range(num_bits)], tf.int32)
  return tf.reduce_sum(tf.cast(bits, tf.int32) * powers, axis=-1)


def int_to_bits(ints, num_bits):
  """int [...] -> little-endian float32 bits [..., num_bits]."""
  powers = tf.constant([2**i for i in range(num_bits)], tf.int32)
  ints = tf.cast(ints, tf.int32)[..., tf.newaxis]
  return tf.cast(tf.math.floormod(tf.math.floordiv(ints, powers), 2),
                 tf.float32)


# --------------------------------------------------------------------------
# Replica helpers.
# --------------------------------------------------------------------------


def _replica_context():
  """The replica context if there is more than one replica, else None."""
  if not tf.distribute.has_strategy():
    return None
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return None
  return ctx


def _all_reduce_sum(ctx, tensors):
  if ctx is None:
    return tensors
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tensors)


def _broadcast_from_first_with_data(ctx, value, has_data):
  """Every replica gets `value` of the lowest replica whose has_data is True.

  Returns (value, any_replica_has_data). Both are identical on all replicas.
  Uses two all-reduces and no control flow (collectives may not sit in a
  tf.cond inside strategy.run).
  """
  if ctx is None:
    return value, has_data
  num = ctx.num_replicas_in_sync
  rid = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
  flags = ctx.all_reduce(
      tf.distribute.ReduceOp.SUM,
      tf.one_hot(rid, num) * tf.cast(has_data, tf.float32))
  first = tf.argmax(flags, output_type=tf.int32)  # 0 if nobody has data
  mine = tf.equal(rid, first)
  value = ctx.all_reduce(
      tf.distribute.ReduceOp.SUM,
      tf.where(mine, value, tf.zeros_like(value)))
  return value, tf.reduce_max(flags) > 0.0


def _sample_rows(x_flat, keep, num):
  """num random kept rows of x_flat [N, D] (without replacement if possible).

  Returns (rows [num, D], has_data scalar bool); rows are 0 when no row is kept.
  """
  n_all = tf.shape(x_flat)[0]
  if keep is None:
    kept = tf.range(n_all)
  else:
    kept = tf.cast(tf.where(keep)[:, 0], tf.int32)
  n = tf.size(kept)
  perm = tf.concat([tf.random.shuffle(kept), [n_all]], axis=0)
  padded = tf.concat([x_flat, tf.zeros_like(x_flat[:1])], axis=0)
  pick = tf.where(n > 0, tf.range(num) % tf.maximum(n, 1), n)
  return tf.gather(padded, tf.gather(perm, pick)), n > 0


# --------------------------------------------------------------------------
# Layers.
# --------------------------------------------------------------------------


def _check_positive_int(name, value, minimum, what):
  if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
      or value < minimum):
    raise ValueError(
        f"{name}={value!r} is not accepted: {what} (an int >= {minimum}).")


def _prepare_mask(mask, x):
  """mask [...] (bool or 0/1) -> (float32 weights [N] or None, bool [N] or None)."""
  if mask is None:
    return None, None
  mask = tf.convert_to_tensor(mask)
  if mask.shape.rank is not None and mask.shape.rank != x.shape.rank - 1:
    raise ValueError(
        f"mask has shape {mask.shape}; expected the input's shape without "
        f"its last dimension, {x.shape[:-1]}.")
  if mask.dtype == tf.bool:
    keep = tf.reshape(mask, [-1])
  else:
    keep = tf.reshape(mask, [-1]) > 0
  return tf.cast(keep, tf.float32), keep


class _Bottleneck(keras.layers.Layer):
  """What every bottleneck here shares: the input checks, the mask, the flat view.

  A subclass passes `embedding_dim` (None or D) to this __init__ and ends its
  own with `_build_if_dim_known()`, creates its weights in
  `_build_weights(dim)`, and starts its call with `_flatten(x, mask)`.
  """

  def __init__(self, embedding_dim=None, **kwargs):
    super().__init__(**kwargs)
    self.embedding_dim = None if embedding_dim is None else int(embedding_dim)
    self.supports_masking = True

  def _build_if_dim_known(self):
    if self.embedding_dim is not None:
      self.build((None, self.embedding_dim))

  def build(self, input_shape):
    dim = input_shape[-1]
    if dim is None:
      raise ValueError(
          f"{self.name}: the last dimension of the input must be known; got "
          f"shape {input_shape}.")
    dim = int(dim)
    if self.embedding_dim is not None and dim != self.embedding_dim:
      raise ValueError(
          f"{self.name} got an input whose last dimension is {dim}; the "
          f"layer was built for D = {self.embedding_dim}.")
    self._build_weights(dim)
    self.embedding_dim = dim
    self.built = True

  def _build_weights(self, dim):
    raise NotImplementedError

  def compute_mask(self, inputs, previous_mask):
    return [previous_mask]

  def _flatten(self, x, mask):
    """x [..., D], mask [...] -> (x, float32 [N, D], batch shape [...],
    weights float32 [N] or None, keep bool [N] or None)."""
    x = tf.convert_to_tensor(x)
    if x.shape.rank is None or x.shape.rank < 2:
      raise ValueError(
          f"{self.name} got an input of shape {x.shape} (rank "
          f"{x.shape.rank}); expected rank >= 2, [..., D].")
    dim = self.embedding_dim
    if dim is not None and x.shape[-1] is not None and x.shape[-1] != dim:
      raise ValueError(
          f"{self.name} got an input whose last dimension is {x.shape[-1]}; "
          f"the layer was built for D = {dim}.")
    x32 = tf.reshape(tf.cast(x, tf.float32), [-1, dim or x.shape[-1]])
    weights, keep = _prepare_mask(mask, x)
    return x, x32, tf.shape(x)[:-1], weights, keep


class VectorQuantizer(_Bottleneck):
  """Vector-quantization bottleneck trained by hard EM, soft EM or gradient.

  Modes:
    "hard_em": VQ-VAE with EMA updates = online k-means (§2.1-2.2): nearest
      code (Eq. 1), EMA of counts and sums (Eq. 3-4, Laplace-smoothed).
    "soft_em": Monte-Carlo EM (§3.2): num_samples draws from
      Multinomial(-||z_e - e_j||^2 / temperature); decoder input = mean of the
      drawn embeddings (Eq. 11); EMA over the fractional counts.
    "vq": the original VQ-VAE: nearest code, codebook learned by gradient of
      ||sg(z_e) - e||^2 (the codebook is a trainable weight, no EMA).

  Call: `layer(x, training=False, mask=None)` with x of shape [..., D]
  (D divisible by num_blocks), training a Python bool, and mask of shape
  [...] (True / nonzero = keep; False / 0 = padding). A training call quantizes
  x with the codebook as it was before the call, then applies the EMA update
  (assign ops), so it works inside tf.function and strategy.run.

  Output (`BottleneckOutput`), with batch shape [...] = x.shape[:-1]:
    quantized: [..., D], dtype of x.
    indices: int32 [...] + ([num_blocks] if num_blocks > 1) +
      ([num_samples] if mode == "soft_em"); index j of block b refers to
      row j of that block's codebook.
    soft_targets: float32 [...] + ([num_blocks] if num_blocks > 1) + [K].
    loss, perplexity, usage: float32 scalars over this replica's kept
      positions (perplexity and usage over the all-replica batch in training).

  State: `codebook` ([K, D], or [num_blocks, K, D / num_blocks]),
  `ema_count` ([K] or [num_blocks, K]) and `ema_means_sum` (codebook shape),
  all float32; EMA state is non-trainable; the codebook is trainable in "vq"
  mode only, where there is no EMA state (`ema_count` and `ema_means_sum` are
  None). The Laplace smoothing uses the per-block K (T2T used the total
  2^z_size). With the options on, `initialized` (scalar) and `steps_unused`
  (count shape) are non-trainable float32 state too. The EMA starts at
  ema_count = initial_ema_count and ema_means_sum = initial_ema_count *
  codebook (a consistent state: the
  smoothed update leaves an unused code where it is, up to the Laplace factor;
  T2T instead starts its counts at 0, which scales unused codes by ~1/epsilon
  on the first step; initial_ema_count=0 gives Sonnet's behaviour, unused
  codes move to 0).

  Args:
    codebook_size: K, number of codes (per block), >= 2.
    mode: "hard_em", "soft_em" or "vq".
    num_samples: m, draws per position in "soft_em" (>= 1; ignored otherwise).
    decay: EMA decay lambda in [0, 1] (paper: 0.999).
    epsilon: Laplace smoothing of the counts (paper / T2T: 1e-5).
    beta: weight of the commitment loss (paper: 0.25).
    num_blocks: product (sliced) quantization: D is split into num_blocks
      slices, each quantized with its own codebook of K codes.
    temperature: divides the soft E step logits (1.0 = the paper).
    embedding_dim: optional D; if given the layer is built at construction.
    initial_ema_count: EMA pseudo-count per code at the start and after a
      dead-code restart (>= 0; a restart uses 1 if this is 0).
    init_from_first_batch: seed the codebook from random (kept) vectors of the
      first training batch, before its E step.
    dead_code_restart_steps: if > 0, a code not chosen for this many
      consecutive training steps is re-seeded from a random batch vector and
      its EMA state reset (0 = off). Costs a gather of K batch rows per
      training step (and, under several replicas, two all-reduces of [K, D]:
      the choice is broadcast from one replica, so replicas stay identical).
    codebook_initializer: Keras initializer for the codebook (default: T2T's
      variance_scaling(uniform)).
    jit_compile: compile the distance GEMM with XLA (with the TF-ops path
      also the argmax / logits and the soft mean of Eq. 11). On this
      project's CPUs XLA's GEMM is much faster for large codebooks
      (BENCHMARKS.md); XLA compiles once per distinct input shape.
    fused_kernel: None (default): in hard_em and soft_em training steps on
      CPU, everything after the distance GEMM (E step, Eq. 11, distortion,
      M-step statistics) runs in one compiled kernel (vq_kernel.py) when it
      builds; its soft E step draws by inverse CDF from float32
      probabilities instead of tf.random.categorical. False: TensorFlow ops
      only. Never used in "vq" mode or outside training (exported graphs
      hold no custom op).
  """

  def __init__(self,
               codebook_size,
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
               fused_kernel=None,
               **kwargs):
    super().__init__(embedding_dim=embedding_dim, **kwargs)
    _check_positive_int("codebook_size", codebook_size, 2,
                        "the number of codes")
    if mode not in MODES:
      raise ValueError(
          f"mode={mode!r} is not accepted; expected one of {MODES}.")
    _check_positive_int("num_samples", num_samples, 1,
                        "the number of Monte-Carlo draws")
    _check_positive_int("num_blocks", num_blocks, 1,
                        "the number of codebook slices")
    if not 0.0 <= float(decay) <= 1.0:
      raise ValueError(f"decay={decay!r} is not accepted; expected [0, 1].")
    if float(epsilon) < 0.0:
      raise ValueError(f"epsilon={epsilon!r} is not accepted; expected >= 0.")
    if float(beta) < 0.0:
      raise ValueError(f"beta={beta!r} is not accepted; expected >= 0.")
    if float(temperature) <= 0.0:
      raise ValueError(
          f"temperature={temperature!r} is not accepted; expected > 0.")
    if float(initial_ema_count) < 0.0:
      raise ValueError(f"initial_ema_count={initial_ema_count!r} is not "
                       "accepted; expected >= 0.")
    if isinstance(dead_code_restart_steps, bool) or not isinstance(
        dead_code_restart_steps, (int, np.integer)) or (
            dead_code_restart_steps < 0):
      raise ValueError(
          f"dead_code_restart_steps={dead_code_restart_steps!r} is not "
          "accepted; expected an int >= 0 (0 = off).")
    self.codebook_size = int(codebook_size)
    self.mode = mode
    self.num_samples = int(num_samples) if mode == "soft_em" else 1
    self._requested_num_samples = int(num_samples)
    self.decay = float(decay)
    self.epsilon = float(epsilon)
    self.beta = float(beta)
    self.num_blocks = int(num_blocks)
    self.temperature = float(temperature)
    self.initial_ema_count = float(initial_ema_count)
    self.init_from_first_batch = bool(init_from_first_batch)
    self.dead_code_restart_steps = int(dead_code_restart_steps)
    self.codebook_initializer = keras.initializers.get(
        codebook_initializer if codebook_initializer != "variance_scaling"
        else keras.initializers.VarianceScaling(distribution="uniform"))
    self.jit_compile = bool(jit_compile)
    if fused_kernel not in (None, False):
      raise ValueError(f"fused_kernel={fused_kernel!r} is not accepted; "
                       "expected None (use it where it runs) or False.")
    self._requested_fused_kernel = fused_kernel
    self.fused_kernel = fused_kernel  # resolved at the first training call
    # The M step's ~10 elementwise passes over [K, D] fuse into one under
    # XLA; its shapes are fixed, so it compiles once per layer.
    self._ema_fn = tf.function(self._ema_values, jit_compile=True)
    self._gemm_fn = _gemm_and_half_norms
    if self.jit_compile:
      self._gemm_fn = tf.function(_gemm_and_half_norms, jit_compile=True)
      self._scores_fn = tf.function(half_shifted_scores, jit_compile=True)
      self._nearest_fn = tf.function(nearest_codes_and_scores,
                                     jit_compile=True)
      self._mean_fn = tf.function(_gather_mean_of_codes, jit_compile=True)
    else:
      self._scores_fn = half_shifted_scores
      self._nearest_fn = nearest_codes_and_scores
      self._mean_fn = mean_of_codes
    self._build_if_dim_known()

  # -- state ---------------------------------------------------------------

  def _build_weights(self, dim):
    if dim % self.num_blocks:
      raise ValueError(
          f"num_blocks={self.num_blocks} does not divide the input dimension "
          f"D={dim}; D must be a multiple of num_blocks.")
    self.block_dim = dim // self.num_blocks
    k, b, d = self.codebook_size, self.num_blocks, self.block_dim
    cb_shape = (k, dim) if b == 1 else (b, k, d)
    count_shape = (k,) if b == 1 else (b, k)
    self.codebook = self.add_weight(
        name="codebook", shape=cb_shape, dtype="float32",
        initializer=self.codebook_initializer,
        trainable=self.mode == "vq", autocast=False)
    if self.mode != "vq":
      self.ema_count = self.add_weight(
          name="ema_count", shape=count_shape, dtype="float32",
          initializer=keras.initializers.Constant(self.initial_ema_count),
          trainable=False, autocast=False)
      c0 = self.initial_ema_count
      self.ema_means_sum = self.add_weight(
          name="ema_means_sum", shape=cb_shape, dtype="float32",
          initializer=lambda shape, dtype=None: c0 * self.codebook.value,
          trainable=False, autocast=False)
    else:
      self.ema_count = None
      self.ema_means_sum = None
    if self.init_from_first_batch:
      self.initialized = self.add_weight(
          name="initialized", shape=(), dtype="float32",
          initializer="zeros", trainable=False, autocast=False)
    if self.dead_code_restart_steps:
      self.steps_unused = self.add_weight(
          name="steps_unused", shape=count_shape, dtype="float32",
          initializer="zeros", trainable=False, autocast=False)

  def _blocks(self, v):
    """Variable value in [B, K, d] (or [B, K]) layout."""
    if self.num_blocks == 1:
      return v[tf.newaxis]
    return v

  def _unblocks(self, v):
    if self.num_blocks == 1:
      return v[0]
    return v

  def nearest(self, x):
    """The hard E step (Eq. 1) on x [..., D], any mode: int32 codes [...] (+ [num_blocks]).

    Deterministic, no update: the most probable code also in soft EM, where a
    call samples. For inference and export.
    """
    _, x32, shape, _, _ = self._flatten(x, None)
    b, d = self.num_blocks, self.block_dim
    flat = tf.reshape(x32, [-1, b, d])
    codes, _ = self._nearest_fn(
        tf.transpose(flat, [1, 0, 2]),
        self._blocks(tf.convert_to_tensor(self.codebook)))  # [b, N]
    if b == 1:
      return tf.reshape(codes[0], shape)
    return tf.reshape(tf.transpose(codes), tf.concat([shape, [b]], 0))

  # -- call ----------------------------------------------------------------

  def call(self, x, training=None, mask=None):
    x, x32, batch_shape, weights, keep = self._flatten(x, mask)
    training = bool(training)
    k, b, d, s = (self.codebook_size, self.num_blocks, self.block_dim,
                  self.num_samples)
    x_stats = tf.stop_gradient(x32)  # statistics: weights zero the padding
    ctx = _replica_context() if training else None

    if training and self.init_from_first_batch:
      self._initialize_from_batch(ctx, x_stats, keep)

    # [B, N, d] layout.
    if b == 1:
      xb = x32[tf.newaxis]
    else:
      xb = tf.transpose(tf.reshape(x32, [-1, b, d]), [1, 0, 2])
    codebook = self._blocks(tf.convert_to_tensor(self.codebook))
    if self.mode != "vq":
      codebook = tf.stop_gradient(codebook)
    codebook_e = tf.stop_gradient(codebook)

    # E step (in hard modes, with the winning score for the loss).
    xb_e = tf.stop_gradient(xb)
    rows = score = None
    fused = training and self._fused()
    if fused:  # E step, Eq. 11, distortion and statistics in one kernel
      idx, q_flat, rows, counts, sums = self._fused_step(xb_e, codebook_e,
                                                         keep)
    elif self.mode == "soft_em":
      logits = self._scores_fn(xb_e, codebook_e) * (2.0 / self.temperature)
      # A row of non-finite logits (padding may hold any value) draws index
      # K from tf.random.categorical: keep every index a valid code.
      idx = tf.minimum(sample_codes(logits, s), k - 1)  # [B, N, S]
      q = self._mean_fn(codebook, idx)  # Eq. 11
    else:
      idx, score = self._nearest_fn(xb_e, codebook_e)  # [B, N]
      idx = idx[..., tf.newaxis]
      q = mean_of_codes(codebook, idx)  # [B, N, d]: the chosen codes
      score = tf.reduce_sum(score, axis=0)  # [N], summed over blocks

    if not fused:  # back to [N, D]
      if b == 1:
        q_flat = q[0]
      else:
        q_flat = tf.reshape(tf.transpose(q, [1, 0, 2]),
                            [-1, self.embedding_dim])

    loss = self.beta * commitment_loss(x32, q_flat, score, weights, rows)
    if self.mode == "vq":
      loss = loss + codebook_loss(x32, q_flat, score, weights)

    quantized = straight_through(
        x, tf.reshape(q_flat, tf.shape(x)))

    # Statistics (M step) and metrics.
    xb_stats = tf.stop_gradient(xb)
    need_sums = training and self.mode != "vq"
    if fused:
      counts, sums = _all_reduce_sum(ctx, [counts, sums])
    elif need_sums:
      counts, sums = cluster_statistics(xb_stats, idx, k, keep)
      counts, sums = _all_reduce_sum(ctx, [counts, sums])
    else:
      counts = code_histogram(idx, k, weights)
      counts = _all_reduce_sum(ctx, counts)
    perplexity, usage = perplexity_and_usage(counts)

    if need_sums:
      self._ema_step(counts, sums, codebook_e)
    if training and self.dead_code_restart_steps:
      self._restart_dead_codes(ctx, counts, x_stats, keep)

    # Outputs.
    idx_out = tf.transpose(idx, [1, 0, 2])  # [N, B, S]
    soft = mean_one_hot(idx_out, k)  # [N, B, K]
    if self.mode != "soft_em":
      idx_out = idx_out[..., 0]
    if b == 1:
      idx_out = idx_out[:, 0]
      soft = soft[:, 0]
    idx_out = tf.reshape(
        idx_out, tf.concat([batch_shape, tf.shape(idx_out)[1:]], axis=0))
    soft = tf.reshape(
        soft, tf.concat([batch_shape, tf.shape(soft)[1:]], axis=0))
    return BottleneckOutput(
        quantized=quantized, indices=idx_out, soft_targets=soft,
        loss=loss, perplexity=perplexity, usage=usage)

  def _fused(self):
    """Whether training steps use the fused CPU kernel (vq_kernel.cc)."""
    if self.fused_kernel is None:
      self.fused_kernel = (
          self.mode != "vq" and
          not tf.config.list_physical_devices("GPU") and vq_kernel.available())
    return self.fused_kernel

  def _fused_step(self, xb, codebook, keep):
    """E step, Eq. 11, row distortions and M-step statistics of xb [B, N, d]
    by the fused kernel, block by block: (indices [B, N, S], q [N, D],
    distortion summed over blocks [N], counts [B, K], sums [B, K, d])."""
    n = tf.shape(xb)[1]
    if keep is None:
      keep = tf.ones([n], tf.bool)
    draws = self.num_samples if self.mode == "soft_em" else 0
    outs = []
    for x_b, e in zip(tf.unstack(xb), tf.unstack(codebook)):
      xe, half_norms = self._gemm_fn(x_b, e)
      outs.append(vq_kernel.quantize_rows(
          xe, half_norms, x_b, e, keep, tf.random.uniform([n, draws]),
          scale=2.0 / self.temperature))
    idx, q, rows, counts, sums = zip(*outs)
    if self.num_blocks == 1:
      return (idx[0][tf.newaxis], q[0], rows[0], counts[0][tf.newaxis],
              sums[0][tf.newaxis])
    return (tf.stack(idx), tf.concat(q, axis=-1), tf.add_n(rows),
            tf.stack(counts), tf.stack(sums))

  # -- updates ---------------------------------------------------------------

  def _ema_values(self, ema_count, ema_sum, counts, sums, old_codebook):
    """The EMA state and codebook after one M step (Eq. 3-4); a batch with no
    kept position is no observation and leaves them as they were."""
    new_count, new_sum, new_codebook = ema_update(
        ema_count, ema_sum, counts, sums, self.decay, self.epsilon,
        old_codebook)
    has_data = tf.reduce_sum(counts) > 0.0
    return (tf.where(has_data, new_count, ema_count),
            tf.where(has_data, new_sum, ema_sum),
            tf.where(has_data, new_codebook, old_codebook))

  def _ema_step(self, counts, sums, old_codebook):
    """EMA M step (Eq. 3-4) from all-replica batch statistics."""
    new_count, new_sum, new_codebook = self._ema_fn(
        self._blocks(tf.convert_to_tensor(self.ema_count)),
        self._blocks(tf.convert_to_tensor(self.ema_means_sum)),
        counts, sums, old_codebook)
    self.ema_count.assign(self._unblocks(new_count))
    self.ema_means_sum.assign(self._unblocks(new_sum))
    self.codebook.assign(self._unblocks(new_codebook))

  def _candidates(self, ctx, x_stats, keep):
    """K random kept batch vectors [B, K, d], identical on all replicas."""
    rows, has_data = _sample_rows(x_stats, keep, self.codebook_size)
    rows, has_data = _broadcast_from_first_with_data(ctx, rows, has_data)
    if self.num_blocks == 1:
      return rows[tf.newaxis], has_data
    rows = tf.reshape(rows, [self.codebook_size, self.num_blocks,
                             self.block_dim])
    return tf.transpose(rows, [1, 0, 2]), has_data

  def _reset_codes(self, which, candidates, count):
    """Codes where `which` [B, K]: codebook <- candidates [B, K, d], EMA state
    <- (count, count * candidates); every replica assigns the same values."""
    sel = which[..., tf.newaxis]
    codebook = self._blocks(tf.convert_to_tensor(self.codebook))
    self.codebook.assign(self._unblocks(tf.where(sel, candidates, codebook)))
    if self.mode != "vq":
      ema_count = self._blocks(tf.convert_to_tensor(self.ema_count))
      ema_sum = self._blocks(tf.convert_to_tensor(self.ema_means_sum))
      self.ema_count.assign(self._unblocks(
          tf.where(which, tf.fill(tf.shape(ema_count), count), ema_count)))
      self.ema_means_sum.assign(self._unblocks(
          tf.where(sel, count * candidates, ema_sum)))

  def _initialize_from_batch(self, ctx, x_stats, keep):
    """Seed every code from the first training batch (option)."""
    candidates, has_data = self._candidates(ctx, x_stats, keep)
    do_init = tf.logical_and(self.initialized < 0.5, has_data)
    which = tf.fill([self.num_blocks, self.codebook_size], do_init)
    self._reset_codes(which, candidates, self.initial_ema_count)
    self.initialized.assign(
        tf.maximum(self.initialized, tf.cast(do_init, tf.float32)))

  def _restart_dead_codes(self, ctx, counts, x_stats, keep):
    """Re-seed codes unused for dead_code_restart_steps steps (option)."""
    steps = self._blocks(tf.convert_to_tensor(self.steps_unused))
    has_data = tf.reduce_sum(counts) > 0.0
    steps = tf.where(has_data, tf.where(counts > 0.0, 0.0, steps + 1.0), steps)
    dead = steps >= float(self.dead_code_restart_steps)
    candidates, cand_ok = self._candidates(ctx, x_stats, keep)
    dead = tf.logical_and(dead, cand_ok)
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
        embedding_dim=self.embedding_dim,
        initial_ema_count=self.initial_ema_count,
        init_from_first_batch=self.init_from_first_batch,
        dead_code_restart_steps=self.dead_code_restart_steps,
        codebook_initializer=keras.initializers.serialize(
            self.codebook_initializer),
        jit_compile=self.jit_compile,
        fused_kernel=self._requested_fused_kernel)
    return config


# --------------------------------------------------------------------------
# The bottlenecks the paper compares against (§5.1.1).
# --------------------------------------------------------------------------


def _flat_metrics(indices, num_codes, weights):
  """perplexity, usage of int32 codes [N] over num_codes (kept rows only)."""
  counts = code_histogram(indices[tf.newaxis, :, tf.newaxis], num_codes,
                          weights)
  return perplexity_and_usage(counts)


def _masked_row_mean(values, weights):
  """Mean of per-row values [N] over kept rows (NaN-safe for padding)."""
  if weights is None:
    return tf.reduce_mean(values)
  values = tf.where(weights > 0.0, values * weights, 0.0)
  return tf.math.divide_no_nan(tf.reduce_sum(values), tf.reduce_sum(weights))


class GumbelSoftmaxBottleneck(_Bottleneck):
  """Gumbel-softmax bottleneck (Jang et al. 2016; Maddison et al. 2016).

  The paper's §5.1.1 baseline. Logits over K codes come from a dense layer on
  x; in training a sample y_soft = softmax((logits + g) / temperature), with
  g ~ Gumbel(0, 1), is made hard (one-hot of its argmax, which is an exact
  sample of Categorical(softmax(logits))) with the straight-through estimator
  y = one_hot + y_soft - sg(y_soft); in inference y = one_hot(argmax logits).
  The decoder input is y @ codebook, a trainable [K, D] embedding, so the
  layer is a drop-in replacement of `VectorQuantizer`.

  Output (`BottleneckOutput`): quantized [..., D] (forward value: the sampled
  code's embedding), indices int32 [...], soft_targets = one-hot of the sample
  [..., K], loss = kl_weight * KL(softmax(logits) || uniform) (mean over kept
  positions), perplexity and usage of the sampled codes.

  Args:
    codebook_size: K >= 2.
    temperature: initial softmax temperature (> 0); a non-trainable variable
      `temperature` that a trainer may anneal with `assign`.
    kl_weight: weight of the KL-to-uniform prior term (>= 0).
    straight_through: if False, the training output is the soft sample.
    embedding_dim: optional D; if given the layer is built at construction.
  """

  def __init__(self, codebook_size, temperature=1.0, kl_weight=0.002,
               straight_through=True, embedding_dim=None, **kwargs):
    super().__init__(embedding_dim=embedding_dim, **kwargs)
    _check_positive_int("codebook_size", codebook_size, 2,
                        "the number of codes")
    if float(temperature) <= 0.0:
      raise ValueError(
          f"temperature={temperature!r} is not accepted; expected > 0.")
    if float(kl_weight) < 0.0:
      raise ValueError(
          f"kl_weight={kl_weight!r} is not accepted; expected >= 0.")
    self.codebook_size = int(codebook_size)
    self.initial_temperature = float(temperature)
    self.kl_weight = float(kl_weight)
    self.straight_through = bool(straight_through)
    self._build_if_dim_known()

  def _build_weights(self, dim):
    k = self.codebook_size
    self.logits_kernel = self.add_weight(
        name="logits_kernel", shape=(dim, k), dtype="float32",
        initializer="glorot_uniform", autocast=False)
    self.logits_bias = self.add_weight(
        name="logits_bias", shape=(k,), dtype="float32",
        initializer="zeros", autocast=False)
    self.codebook = self.add_weight(
        name="codebook", shape=(k, dim), dtype="float32",
        initializer=keras.initializers.VarianceScaling(
            distribution="uniform"), autocast=False)
    self.temperature = self.add_weight(
        name="temperature", shape=(), dtype="float32",
        initializer=keras.initializers.Constant(self.initial_temperature),
        trainable=False, autocast=False)

  def logits(self, x):
    """Code logits [N, K], float32, for x [N, D]."""
    return tf.matmul(tf.cast(x, tf.float32), self.logits_kernel) + (
        self.logits_bias)

  def call(self, x, training=None, mask=None):
    x, x32, batch_shape, weights, _ = self._flatten(x, mask)
    k = self.codebook_size
    logits = self.logits(x32)
    if training:
      uniform = tf.random.uniform(tf.shape(logits), minval=1e-10, maxval=1.0)
      perturbed = logits - tf.math.log(-tf.math.log(uniform))
      idx = tf.argmax(perturbed, axis=-1, output_type=tf.int32)
      hard = tf.one_hot(idx, k, dtype=tf.float32)
      y_soft = tf.nn.softmax(perturbed / self.temperature)
      if self.straight_through:
        y = hard + (y_soft - tf.stop_gradient(y_soft))
      else:
        y = y_soft
    else:
      idx = tf.argmax(logits, axis=-1, output_type=tf.int32)
      hard = tf.one_hot(idx, k, dtype=tf.float32)
      y = hard
    q = tf.matmul(y, self.codebook)
    log_p = tf.nn.log_softmax(logits)
    kl = tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1) + np.log(k)
    loss = self.kl_weight * _masked_row_mean(kl, weights)
    perplexity, usage = _flat_metrics(idx, k, weights)
    return BottleneckOutput(
        quantized=tf.reshape(tf.cast(q, x.dtype), tf.shape(x)),
        indices=tf.reshape(idx, batch_shape),
        soft_targets=tf.reshape(
            hard, tf.concat([batch_shape, [k]], axis=0)),
        loss=loss, perplexity=perplexity, usage=usage)

  def get_config(self):
    config = super().get_config()
    config.update(codebook_size=self.codebook_size,
                  temperature=self.initial_temperature,
                  kl_weight=self.kl_weight,
                  straight_through=self.straight_through,
                  embedding_dim=self.embedding_dim)
    return config


class ImprovedSemanticHashing(_Bottleneck):
  """Improved semantic hashing (Kaiser & Bengio 2018; Kaiser et al. 2018).

  The paper's §5.1.1 baseline, as in T2T: a dense layer maps x to num_bits
  pre-activations c; y = saturating_sigmoid(c + n) with Gaussian noise n in
  training (none in inference); the bits are 1[y > 0.5], passed on with the
  straight-through estimator bits + y - sg(y); in training, each position uses
  the discrete value with probability discrete_mix and the soft y otherwise.
  The decoder input is dense_a(v) + dense_b(1 - v) of dimension D (T2T's
  "vch1a + vch1b" embedding of the bits), so the layer is a drop-in
  replacement of `VectorQuantizer`.

  Output (`BottleneckOutput`): quantized [..., D], indices int32 [...] (the
  bits read little-endian as an integer in [0, 2^num_bits)), soft_targets =
  one-hot of the index over 2^num_bits codes [..., 2^num_bits] (only computed
  if used inside a tf.function), loss = 0, perplexity and usage over the
  2^num_bits codes.

  Args:
    num_bits: number of bits, 1 <= num_bits <= 24.
    noise_std: standard deviation of the training noise (T2T: 1.0).
    discrete_mix: probability of the discrete value in training (T2T: 0.5
      after warm-up).
    embedding_dim: optional D; if given the layer is built at construction.
  """

  def __init__(self, num_bits, noise_std=1.0, discrete_mix=0.5,
               embedding_dim=None, **kwargs):
    super().__init__(embedding_dim=embedding_dim, **kwargs)
    if isinstance(num_bits, bool) or not isinstance(
        num_bits, (int, np.integer)) or not 1 <= num_bits <= 24:
      raise ValueError(f"num_bits={num_bits!r} is not accepted; expected an "
                       "int in [1, 24].")
    if float(noise_std) < 0.0:
      raise ValueError(
          f"noise_std={noise_std!r} is not accepted; expected >= 0.")
    if not 0.0 <= float(discrete_mix) <= 1.0:
      raise ValueError(
          f"discrete_mix={discrete_mix!r} is not accepted; expected [0, 1].")
    self.num_bits = int(num_bits)
    self.noise_std = float(noise_std)
    self.discrete_mix = float(discrete_mix)
    self._build_if_dim_known()

  @property
  def codebook_size(self):
    return 2**self.num_bits

  def _build_weights(self, dim):
    nb = self.num_bits
    self.bits_kernel = self.add_weight(
        name="bits_kernel", shape=(dim, nb), dtype="float32",
        initializer="glorot_uniform", autocast=False)
    self.bits_bias = self.add_weight(
        name="bits_bias", shape=(nb,), dtype="float32", initializer="zeros",
        autocast=False)
    self.embed_on = self.add_weight(
        name="embed_on", shape=(nb, dim), dtype="float32",
        initializer="glorot_uniform", autocast=False)
    self.embed_off = self.add_weight(
        name="embed_off", shape=(nb, dim), dtype="float32",
        initializer="glorot_uniform", autocast=False)
    self.embed_bias = self.add_weight(
        name="embed_bias", shape=(dim,), dtype="float32",
        initializer="zeros", autocast=False)

  def embed_bits(self, bits):
    """Decoder input for bits (or soft bits) v [N, num_bits]: [N, D]."""
    return (tf.matmul(bits, self.embed_on) +
            tf.matmul(1.0 - bits, self.embed_off) + self.embed_bias)

  def call(self, x, training=None, mask=None):
    x, x32, batch_shape, weights, _ = self._flatten(x, mask)
    c = tf.matmul(x32, self.bits_kernel) + self.bits_bias
    if training and self.noise_std > 0.0:
      c = c + tf.random.truncated_normal(tf.shape(c), stddev=self.noise_std)
    y = saturating_sigmoid(c)
    bits = tf.cast(y > 0.5, tf.float32)
    y_discrete = bits + (y - tf.stop_gradient(y))
    if training and self.discrete_mix < 1.0:
      use_discrete = tf.random.uniform(tf.shape(y)[:1]) < self.discrete_mix
      v = tf.where(use_discrete[:, tf.newaxis], y_discrete, y)
    else:
      v = y_discrete
    q = self.embed_bits(v)
    idx = bits_to_int(bits)
    perplexity, usage = _flat_metrics(idx, self.codebook_size, weights)
    return BottleneckOutput(
        quantized=tf.reshape(tf.cast(q, x.dtype), tf.shape(x)),
        indices=tf.reshape(idx, batch_shape),
        soft_targets=tf.reshape(
            tf.one_hot(idx, self.codebook_size, dtype=tf.float32),
            tf.concat([batch_shape, [self.codebook_size]], axis=0)),
        loss=tf.constant(0.0), perplexity=perplexity, usage=usage)

  def get_config(self):
    config = super().get_config()
    config.update(num_bits=self.num_bits, noise_std=self.noise_std,
                  discrete_mix=self.discrete_mix,
                  embedding_dim=self.embedding_dim)
    return config
