"""The paper's equations as plain TensorFlow functions (no state, no layers).

Roy, Vaswani, Neelakantan, Parmar (2018), "Theory and Experiments on Vector
Quantized Autoencoders". Shapes: B = blocks (product quantization), N =
positions, K = codes per block, d = block dimension, S = samples per position.

========================  ====================================================
Paper                     Function
========================  ====================================================
Eq. 1, Eq. 7 (E step of   `nearest_codes`, `nearest_codes_and_scores`: argmin_j
hard EM)                  ||z_e - e_j||^2 as argmax_j (z_e . e_j - ||e_j||^2/2)
                          from one GEMM; `squared_distances` the distances.
Eq. 2 (loss)              `commitment_loss` beta-free term ||z_e - sg(z_q)||^2,
                          `codebook_loss` ||sg(z_e) - e||^2 (gradient VQ),
                          `straight_through` (the decoder input z_q whose
                          gradient is copied to z_e).
Eq. 3-4 (EMA), Eq. 8      `cluster_statistics` (batch counts and sums) +
(k-means M step)          `ema_update` (decay, T2T's Laplace smoothing; with
                          decay = 0 and epsilon = 0 the k-means M step).
Eq. 9, §3.2 (soft E step) `code_logits` + `sample_codes`: S draws from
                          Multinomial(-||z_e - e_j||^2 / temperature).
§3.2 M step               `cluster_statistics` with fractional counts 1/S.
Eq. 11 (decoder input)    `mean_of_codes`: the mean of the S drawn codes.
§3.2 latent targets       `mean_one_hot`: the mean of the S sampled one-hots.
========================  ====================================================

Distances are formed in float32 as ||x||^2 - 2 x.e + ||e||^2 with one GEMM:
[N, K, D] is never formed and no square root is taken. Where only the
x-dependent part matters (argmin, the softmax of the soft E step) the row norms
are left out. Each public function is the reference; a private `_fast_*`
variant beside it computes the same thing faster and is tested against it.
"""

import keras
import tensorflow as tf

# -- E step -------------------------------------------------------------------


def half_shifted_scores(x, codebook):
  """x . e_j - ||e_j||^2 / 2 = -||x - e_j||^2 / 2 up to a per-row constant.

  The score shared by Eq. 1 / Eq. 7 (its argmax is the nearest code) and by
  §3.2 (2 * score / temperature are the Multinomial logits).

  Args:
    x: float32 [B, N, d].
    codebook: float32 [B, K, d].

  Returns:
    float32 [B, N, K].
  """
  half_norms = 0.5 * tf.reduce_sum(tf.square(codebook), axis=-1)  # [B, K]
  if x.shape[0] == 1:  # one block: a plain GEMM
    xe = tf.matmul(x[0], codebook[0], transpose_b=True)[tf.newaxis]
  else:
    xe = tf.matmul(x, codebook, transpose_b=True)
  return xe - half_norms[:, tf.newaxis, :]


def squared_distances(x, codebook):
  """||x_i - e_j||^2 for all i, j: the quantity minimised in Eq. 1 and Eq. 7.

  Float32, clamped at 0 (the expansion can round below zero).

  Args:
    x: [N, D] or [B, N, d].
    codebook: [K, D] or [B, K, d], the same rank as x.

  Returns:
    float32 [N, K] or [B, N, K].
  """
  x, codebook = tf.cast(x, tf.float32), tf.cast(codebook, tf.float32)
  squeeze = x.shape.rank == 2
  if squeeze:
    x, codebook = x[tf.newaxis], codebook[tf.newaxis]
  x_norms = tf.reduce_sum(tf.square(x), axis=-1, keepdims=True)
  d2 = tf.maximum(x_norms - 2.0 * half_shifted_scores(x, codebook), 0.0)
  return d2[0] if squeeze else d2


def nearest_codes(x, codebook):
  """Eq. 1 / Eq. 7: z_i = argmin_j ||x_i - e_j||^2 (ties: the lowest j).

  Args:
    x: float32 [B, N, d].
    codebook: float32 [B, K, d].

  Returns:
    int32 [B, N].
  """
  return tf.argmax(half_shifted_scores(x, codebook), axis=-1, output_type=tf.int32)


def nearest_codes_and_scores(x, codebook):
  """`nearest_codes` and each row's winning score x . e_z - ||e_z||^2 / 2.

  The score gives the distortion without a pass over x - e_z:
  ||x - e_z||^2 = ||x||^2 - 2 * score (`distortion_loss`).

  Returns:
    (int32 [B, N], float32 [B, N]).
  """
  scores = half_shifted_scores(x, codebook)
  idx = tf.argmax(scores, axis=-1, output_type=tf.int32)
  return idx, tf.gather(scores, idx, batch_dims=2)


def code_logits(x, codebook, temperature=1.0):
  """Logits of the soft E step (Eq. 9, §3.2): -||x_i - e_j||^2 / temperature.

  Up to the per-row constant -||x_i||^2 / temperature, which leaves the
  Multinomial unchanged.

  Returns:
    float32 [B, N, K].
  """
  return half_shifted_scores(x, codebook) * (2.0 / temperature)


def sample_codes(logits, num_samples, seed=None):
  """The Monte-Carlo E step (§3.2): S draws per row from Multinomial(logits).

  A row of non-finite logits (padding may hold any value) would draw index K;
  draws are clamped to K - 1, so every draw is a valid code.

  Args:
    logits: float32 [B, N, K].
    num_samples: S, m in the paper.
    seed: None (TensorFlow's stateful sampler), or a keras.random.SeedGenerator:
      its state, checkpointed with the model's, makes a resumed run draw what an
      unbroken one would.

  Returns:
    int32 [B, N, S].
  """
  num_blocks, k = logits.shape[0], tf.shape(logits)[-1]
  rows = tf.reshape(logits, [-1, k])
  if seed is None:
    draws = tf.random.categorical(rows, num_samples, dtype=tf.int32)
  else:
    draws = keras.random.categorical(rows, num_samples, dtype="int32", seed=seed)
  return tf.minimum(tf.reshape(draws, [num_blocks, -1, num_samples]), k - 1)


# -- Eq. 11 and the soft targets ------------------------------------------------


def mean_of_codes(codebook, draws):
  """Eq. 11: z_q(x_i) = (1/S) sum_l e_{z_i^l}, per block (Eq. 1's e_{z_i} for S = 1).

  Args:
    codebook: float32 [B, K, d].
    draws: int32 [B, N, S].

  Returns:
    float32 [B, N, d].
  """
  if draws.shape[-1] == 1:
    return tf.gather(codebook, draws[..., 0], batch_dims=1)
  return tf.reduce_mean(tf.gather(codebook, draws, batch_dims=1), axis=2)


def _fast_mean_of_codes(codebook, draws):
  """`mean_of_codes` without the [B, N, S, d] gather: C e with the draws' CSR
  matrix C (`_draw_matrix`). Faster on CPU graphs; XLA cannot compile it.

  C has one more, empty, row: the sparse product of a matrix with no row (N =
  0) kills a graph's process with SIGFPE.
  """
  num_blocks, k, dim = codebook.shape
  if draws.shape[-1] == 1:
    if num_blocks == 1:
      return tf.gather(codebook[0], draws[0, :, 0])[tf.newaxis]
    return tf.gather(codebook, draws[..., 0], batch_dims=1)
  mean = tf.raw_ops.SparseMatrixMatMul(
    a=_draw_matrix(draws, k, extra_row=True), b=tf.reshape(codebook, [num_blocks * k, dim])
  )
  return tf.reshape(mean[:-1], [num_blocks, -1, dim])


def mean_one_hot(draws, depth):
  """The §3.2 soft targets: mean over the last axis of one_hot(draws, depth).

  Built with a scatter, so [..., S, K] is never formed.

  Args:
    draws: int32 [..., S].
    depth: K.

  Returns:
    float32 [..., K], rows sum to 1.
  """
  num_samples = draws.shape[-1]
  if num_samples == 1:
    return tf.one_hot(draws[..., 0], depth, dtype=tf.float32)
  lead = tf.shape(draws)[:-1]
  flat = tf.reshape(draws, [-1, num_samples])
  rows = tf.shape(flat)[0]
  row_ids = tf.repeat(tf.range(rows), num_samples)
  where = tf.stack([row_ids, tf.reshape(flat, [-1])], axis=1)
  dense = tf.scatter_nd(
    where, tf.fill([rows * num_samples], 1.0 / num_samples), tf.stack([rows, depth])
  )
  return tf.reshape(dense, tf.concat([lead, [depth]], axis=0))


# -- M step -------------------------------------------------------------------


def code_histogram(draws, codebook_size, weights=None):
  """counts[b, j] = sum_i w_i / S * #{l : z_i^l = j} of draws [B, N, S].

  Args:
    draws: int32 [B, N, S].
    codebook_size: K.
    weights: optional float32 [N] (0 for padding).

  Returns:
    float32 [B, K].
  """
  num_blocks, num_samples = draws.shape[0], draws.shape[-1]
  if weights is None:
    draw_w = tf.fill(tf.shape(draws), 1.0 / num_samples)
  else:
    row_w = tf.cast(weights, tf.float32) / num_samples
    draw_w = tf.broadcast_to(row_w[tf.newaxis, :, tf.newaxis], tf.shape(draws))
  counts = tf.math.unsorted_segment_sum(
    tf.reshape(draw_w, [-1]),
    tf.reshape(_block_codes(draws, codebook_size), [-1]),
    num_blocks * codebook_size,
  )
  return tf.reshape(counts, [num_blocks, codebook_size])


def cluster_statistics(x, draws, codebook_size, keep=None):
  """The batch terms of the EMA (Eq. 3-4) and of the M steps (Eq. 8, §3.2).

    counts[b, j] = sum_{i kept} 1/S * #{l : z_i^l = j}
    sums[b, j]   = sum_{i kept} 1/S * #{l : z_i^l = j} * x_i

  S = 1 gives the hard counts and sums of Eq. 8; S draws the fractional
  counts of the Monte-Carlo M step. Rows not kept are ignored even if their x
  is not finite.

  Args:
    x: float32 [B, N, d].
    draws: int32 [B, N, S].
    codebook_size: K.
    keep: optional bool [N] (False for padding).

  Returns:
    counts float32 [B, K], sums float32 [B, K, d].
  """
  num_blocks, num_samples, dim = draws.shape[0], draws.shape[-1], x.shape[-1]
  weights = None if keep is None else tf.cast(keep, tf.float32)
  counts = code_histogram(draws, codebook_size, weights)
  rows = tf.repeat(tf.reshape(x, [-1, dim]), num_samples, axis=0)  # [B*N*S, d]
  codes = tf.reshape(_block_codes(draws, codebook_size), [-1])
  if keep is not None:
    kept = tf.repeat(tf.tile(keep, [num_blocks]), num_samples)
    rows, codes = tf.boolean_mask(rows, kept), tf.boolean_mask(codes, kept)
  sums = tf.math.unsorted_segment_sum(rows / num_samples, codes, num_blocks * codebook_size)
  return counts, tf.reshape(sums, [num_blocks, codebook_size, dim])


def _fast_cluster_statistics(x, draws, codebook_size, keep=None):
  """`cluster_statistics` with the sums as one sparse product C^T x.

  C^T is the draws' CSR matrix sorted by code (`_draw_matrix(by_code=True)`),
  so the sums come out in the same order on every run (the transposed product
  of C itself does not, on CPU); no [N, S, d] copy of x is formed.
  """
  num_blocks, dim = x.shape[0], x.shape[-1]
  weights = None if keep is None else tf.cast(keep, tf.float32)
  counts = code_histogram(draws, codebook_size, weights)
  sums = tf.raw_ops.SparseMatrixMatMul(
    a=_draw_matrix(draws, codebook_size, keep, by_code=True), b=tf.reshape(x, [-1, dim])
  )
  return counts, tf.reshape(sums, [num_blocks, codebook_size, dim])


def _block_codes(draws, codebook_size):
  """draws [B, N, S] -> ids b * K + j over all blocks."""
  offsets = tf.range(draws.shape[0], dtype=tf.int32) * codebook_size
  return draws + offsets[:, tf.newaxis, tf.newaxis]


def _draw_matrix(draws, codebook_size, keep=None, by_code=False, extra_row=False):
  """The draws [B, N, S] as a CSR matrix C [B * N, B * K] of 1/S entries.

  Row b * N + i holds 1/S at column b * K + z_i^l for each draw l (repeats
  add up): C e is Eq. 11's mean, C^T x the M step's sums. Rows not kept are
  empty. With by_code, C^T itself, its entries sorted by code. With
  extra_row, C gets one more row, empty.
  """
  num_blocks, num_samples = draws.shape[0], draws.shape[-1]
  n = tf.shape(draws)[1]
  codes = tf.reshape(_block_codes(draws, codebook_size), [-1])
  positions = tf.repeat(tf.range(num_blocks * n), num_samples)
  if keep is not None:
    kept = tf.repeat(tf.tile(keep, [num_blocks]), num_samples)
    codes, positions = tf.boolean_mask(codes, kept), tf.boolean_mask(positions, kept)
  rows, cols = positions, codes
  shape = [num_blocks * n + int(extra_row), num_blocks * codebook_size]
  if by_code:
    order = tf.argsort(codes)
    rows, cols = tf.gather(codes, order), tf.gather(positions, order)
    shape = shape[::-1]
  return tf.raw_ops.SparseTensorToCSRSparseMatrix(
    indices=tf.cast(tf.stack([rows, cols], axis=1), tf.int64),
    values=tf.fill(tf.shape(rows), 1.0 / num_samples),
    dense_shape=tf.cast(tf.stack(shape), tf.int64),
  )


def ema_update(ema_count, ema_means_sum, batch_count, batch_sum, decay, epsilon, old_codebook=None):
  """The EMA M step, Eq. 3-4, with T2T's Laplace smoothing of the counts.

    ema_count     <- decay * ema_count     + (1 - decay) * batch_count
    ema_means_sum <- decay * ema_means_sum + (1 - decay) * batch_sum
    n             =  sum_j ema_count_j                     (per block)
    smoothed_j    =  (ema_count_j + epsilon) / (n + K * epsilon) * n
    codebook_j    =  ema_means_sum_j / smoothed_j

  With decay = 0 and epsilon = 0 this is the k-means M step, Eq. 8. Where
  smoothed_j is 0 the old codebook row is kept (0 if `old_codebook` is None).

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
  codebook = new_sum / tf.where(positive, smoothed, 1.0)[..., tf.newaxis]
  fallback = tf.zeros_like(codebook) if old_codebook is None else old_codebook
  return new_count, new_sum, tf.where(positive[..., tf.newaxis], codebook, fallback)


def perplexity_and_usage(counts):
  """Health metrics of a code histogram counts [B, K] (padding excluded).

  Returns:
    (perplexity, usage): float32 scalars, exp(entropy of counts / total) and
    the fraction of codes with a positive count, both averaged over B.
  """
  total = tf.reduce_sum(counts, axis=-1, keepdims=True)
  probs = tf.math.divide_no_nan(counts, total)
  entropy = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(probs), probs), axis=-1)
  return (tf.reduce_mean(tf.exp(entropy)), tf.reduce_mean(tf.cast(counts > 0.0, tf.float32)))


# -- Eq. 2: losses and the straight-through estimator --------------------------------


@tf.custom_gradient
def _straight_through_op(x, quantized):
  def grad(dy):
    return dy, None

  return tf.identity(quantized), grad


def straight_through(x, quantized):
  """z_q with the straight-through gradient (§2.1): value z_q, gradient to x.

  The forward value is z_q exactly (sg(z_q) + x - sg(x) without its two extra
  passes); the gradient flows unchanged to x and not to z_q.
  """
  return _straight_through_op(x, tf.cast(quantized, x.dtype))


def distortion_loss(x, quantized, score=None, weights=None):
  """Mean over kept positions and features of ||x_i - q_i||^2.

  Given the E step's winning score_i = x_i . q_i - ||q_i||^2 / 2, the value is
  ||x_i||^2 - 2 score_i (one read of x instead of writing x - q; it cancels in
  float32 to ~1e-7 ||x_i||^2 per row and is clamped at 0). Either way the
  gradient is that of the direct formula: 2 w_i (x_i - q_i) / (D sum_i w_i)
  to x and its negative to q.

  Args:
    x: float32 [N, D].
    quantized: float32 [N, D].
    score: optional float32 [N].
    weights: optional float32 [N] (0 for padding, whose rows may hold
      non-finite values).

  Returns:
    float32 scalar (0 when every row is padding).
  """

  def value(x, quantized):
    if score is None:
      if weights is None:
        return 2.0 * tf.nn.l2_loss(x - quantized)
      per_row = tf.reduce_sum(tf.math.squared_difference(x, quantized), -1)
    elif weights is None:
      return tf.maximum(2.0 * (tf.nn.l2_loss(x) - tf.reduce_sum(score)), 0.0)
    else:
      per_row = tf.maximum(tf.reduce_sum(tf.square(x), -1) - 2.0 * score, 0.0)
    return tf.reduce_sum(tf.where(weights > 0.0, per_row * weights, 0.0))

  @tf.custom_gradient
  def loss(x, quantized):
    kept = tf.cast(tf.shape(x)[0], tf.float32) if weights is None else tf.reduce_sum(weights)
    denom = kept * tf.cast(tf.shape(x)[-1], tf.float32)

    def grad(dy):
      g = (x - quantized) * tf.math.divide_no_nan(2.0 * dy, denom)
      if weights is not None:
        g = tf.where(weights[:, tf.newaxis] > 0.0, g * weights[:, tf.newaxis], 0.0)
      return g, -g

    return tf.math.divide_no_nan(value(x, quantized), denom), grad

  return loss(x, quantized)


def commitment_loss(x, quantized, score=None, weights=None):
  """Eq. 2's commitment term ||z_e - sg(z_q)||^2 (squared, as T2T), without beta.

  Averaged over kept positions and features; the gradient reaches x only.
  """
  return distortion_loss(x, tf.stop_gradient(quantized), score, weights)


def codebook_loss(x, quantized, score=None, weights=None):
  """The codebook term of gradient VQ (van den Oord et al.): ||sg(z_e) - e||^2."""
  return distortion_loss(tf.stop_gradient(x), quantized, score, weights)
