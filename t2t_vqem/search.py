"""Model-agnostic autoregressive decoding: greedy search and beam search.

Both searches drive a model through one function,

    symbols_to_logits_fn(ids, step, cache) -> (logits, new_cache)

- `ids`: int32 [batch, max_length + 1], a buffer of fixed width (so that the
  loop has static shapes and compiles with XLA). Column 0 holds the initial
  id (`initial_ids`, a start symbol the model may ignore); column j + 1 holds
  the token chosen at step j; the columns after `step` hold pad_id. A model
  with an incremental cache reads only `previous_ids(ids, step)` (the token
  before the one being predicted); a model without one may recompute from
  the prefix `ids[:, : step + 1]`.
- `step`: int32 scalar tensor, the index (0-based) of the token being
  predicted (ids holds it at column step + 1 once chosen).
- `cache`: a nest (dicts/lists/tuples) of tensors whose leading axis is the
  batch (in beam search: batch * beam_size, beams of one example adjacent).
  Whatever the model needs between steps or per example (decoder key/value
  buffers, encoder output, its padding, per-example length limits) goes here,
  so that beam search tiles it over beams and reorders it by beam parent.
  Scalar (rank-0) tensors are passed through untouched.
- returns `logits`: float [batch, vocab], unnormalised scores of the token at
  position `step`; and `new_cache`: the same structure, each tensor with the
  same shape as the input cache (apart from the batch axis, which must stay
  the same size).

Both searches run a `tf.while_loop` (they are meant to be called inside a
`tf.function`, with or without jit_compile), stop at `max_length` tokens or as
soon as no sequence can change any more, and return ids without the initial
id, `max_length` columns wide: every row is the hypothesis up to and
including EOS, then pad_id. A row that never produced EOS within `max_length`
steps has no EOS.
"""

import tensorflow as tf

from t2t_vqem import constants

PAD_ID, EOS_ID = constants.PAD_ID, constants.EOS_ID

INF = 1.0e7  # "infinite" score magnitude; finite so that sums never produce NaN.


def _relax_batch_dim(tensor):
  shape = tensor.shape
  if shape.rank is None or shape.rank == 0:
    return shape
  return tf.TensorShape([None]).concatenate(shape[1:])


def _cache_invariants(cache):
  return tf.nest.map_structure(_relax_batch_dim, cache)


def previous_ids(ids, step):
  """The tokens before position `step`: ids[:, step], int32 [batch] (see the contract)."""
  return tf.gather(ids, step, axis=1)


def _write_column(buffer, column, values):
  """buffer [..., W] with values [...] written at the given column (a scalar tensor)."""
  at = tf.equal(tf.range(tf.shape(buffer)[-1]), column)
  return tf.where(at, values[..., None], buffer)


def end_at_limit(logits, step, limit, eos_id, forbid_before=None):
  """The symbols-to-logits contract's length limit: rows with step >= limit - 1
  may only emit eos_id (logits [B, V], limit int32 [B]); with forbid_before, rows
  at step < forbid_before may not emit it."""
  is_eos = tf.equal(tf.range(tf.shape(logits)[-1]), eos_id)[None, :]
  if forbid_before is not None:
    logits = tf.where(tf.logical_and(is_eos, step < forbid_before), -INF, logits)
  return tf.where((step >= limit - 1)[:, None], tf.where(is_eos, 0.0, -INF), logits)


def greedy_search(
  symbols_to_logits_fn, initial_ids, cache, max_length, eos_id=EOS_ID, pad_id=PAD_ID
):
  """Greedy decoding: at each step the argmax token.

  Args:
    symbols_to_logits_fn: see the module docstring.
    initial_ids: int32 [batch], the start id of each sequence.
    cache: nest of tensors with leading axis batch (may be empty: {}).
    max_length: int or int32 scalar tensor, maximum number of decoded tokens.
    eos_id: the end-of-sequence id; after it a row only gets pad_id.

  Returns:
    ids int32 [batch, max_length] and scores float32 [batch], the sum of
    log-probabilities of each row's tokens up to EOS.
  """
  initial_ids = tf.convert_to_tensor(initial_ids, tf.int32)
  batch_size = tf.shape(initial_ids)[0]
  max_length = tf.convert_to_tensor(max_length, tf.int32)

  def cond(step, ids, finished, scores, cache):
    del ids, scores, cache
    return tf.logical_and(step < max_length, tf.logical_not(tf.reduce_all(finished)))

  def body(step, ids, finished, scores, cache):
    logits, new_cache = symbols_to_logits_fn(ids, step, cache)
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    next_ids = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
    next_log_probs = tf.gather(log_probs, next_ids, axis=1, batch_dims=1)
    scores += tf.where(finished, 0.0, next_log_probs)
    next_ids = tf.where(finished, pad_id, next_ids)
    finished = tf.logical_or(finished, tf.equal(next_ids, eos_id))
    ids = _write_column(ids, step + 1, next_ids)
    return step + 1, ids, finished, scores, new_cache

  ids = tf.fill([batch_size, max_length + 1], pad_id)
  loop_vars = (
    tf.constant(0),
    _write_column(ids, 0, initial_ids),
    tf.zeros([batch_size], tf.bool),
    tf.zeros([batch_size], tf.float32),
    cache,
  )
  invariants = (
    tf.TensorShape([]),
    tf.TensorShape([None, ids.shape[1]]),
    tf.TensorShape([None]),
    tf.TensorShape([None]),
    _cache_invariants(cache),
  )
  _, ids, _, scores, _ = tf.while_loop(cond, body, loop_vars, shape_invariants=invariants)
  return ids[:, 1:], scores


def length_penalty(length, alpha):
  """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016), float32."""
  return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, tf.cast(alpha, tf.float32))


def tile_beams(tensor, beam_size):
  """[batch, ...] -> [batch * beam_size, ...], the copies of one example adjacent."""
  tensor = tf.convert_to_tensor(tensor)
  if tensor.shape.rank == 0:
    return tensor
  return tf.repeat(tensor, beam_size, axis=0)


def _gather_beams(tensor, flat_index):
  if tensor.shape.rank == 0:
    return tensor
  return tf.gather(tensor, flat_index, axis=0)


def beam_search(
  symbols_to_logits_fn,
  initial_ids,
  cache,
  beam_size,
  max_length,
  alpha=0.6,
  eos_id=EOS_ID,
  pad_id=PAD_ID,
):
  """Beam search with the GNMT length penalty, as in Tensor2Tensor.

  A hypothesis of n tokens (EOS included) with log-probability logp scores
  logp / ((5 + n) / 6) ** alpha. Each step extends the `beam_size` alive
  hypotheses by every token and keeps the 2 * beam_size best extensions (at
  most beam_size of them end in EOS, one per parent, so at least beam_size
  stay alive). Those ending in EOS compete with the finished set, which keeps
  the beam_size best finished hypotheses by score; the others become the
  next alive beams (by log-probability). The cache, tiled over beams, is
  gathered by each new alive beam's parent.

  The loop stops at max_length steps, or when for every example the worst
  kept finished hypothesis already beats the best score any alive hypothesis
  could still reach (its log-probability can only fall, and its length
  penalty is at most that of max_length tokens, for alpha >= 0).

  Args:
    symbols_to_logits_fn: see the module docstring; called with batch *
      beam_size rows.
    initial_ids: int32 [batch].
    cache: nest of tensors with leading axis batch (untiled; tiled here).
    beam_size: Python int.
    max_length: int or int32 scalar tensor, maximum number of decoded tokens.
    alpha: length penalty exponent (>= 0).

  Returns:
    ids int32 [batch, beam_size, max_length] and scores float32 [batch,
    beam_size], best first. For an example with no finished hypothesis the
    alive hypotheses are returned, scored by their penalised log-probability.
  """
  if beam_size < 1:
    raise ValueError(f"beam_size={beam_size!r} must be a positive int")
  initial_ids = tf.convert_to_tensor(initial_ids, tf.int32)
  batch_size = tf.shape(initial_ids)[0]
  max_length = tf.convert_to_tensor(max_length, tf.int32)
  alpha = tf.cast(alpha, tf.float32)
  k = beam_size

  cache = tf.nest.map_structure(lambda t: tile_beams(t, k), cache)
  alive_seq = _write_column(
    tf.fill([batch_size, k, max_length + 1], pad_id), 0, tf.tile(initial_ids[:, None], [1, k])
  )  # [B, K, W]
  # Only beam 0 is live at the start, so the first step expands one hypothesis.
  alive_log_probs = tf.tile(
    tf.concat([[0.0], tf.fill([k - 1], -INF)], axis=0)[None], [batch_size, 1]
  )
  finished_seq = tf.fill(tf.shape(alive_seq), pad_id)
  finished_scores = tf.fill([batch_size, k], -INF)
  finished_flags = tf.zeros([batch_size, k], tf.bool)
  batch_pos = tf.range(batch_size)[:, None]  # [B, 1]

  def cond(step, alive_seq, alive_log_probs, finished_seq, finished_scores, finished_flags, cache):
    del alive_seq, finished_seq, cache
    best_alive_bound = alive_log_probs[:, 0] / length_penalty(max_length, alpha)
    worst_finished = tf.reduce_min(tf.where(finished_flags, finished_scores, -INF), axis=1)
    bound_met = tf.reduce_all(worst_finished > best_alive_bound)
    return tf.logical_and(step < max_length, tf.logical_not(bound_met))

  def body(step, alive_seq, alive_log_probs, finished_seq, finished_scores, finished_flags, cache):
    flat_ids = tf.reshape(alive_seq, [batch_size * k, -1])
    logits, new_cache = symbols_to_logits_fn(flat_ids, step, cache)
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    vocab_size = tf.shape(log_probs)[-1]
    log_probs = alive_log_probs[:, :, None] + tf.reshape(log_probs, [batch_size, k, vocab_size])
    penalty = length_penalty(step + 1, alpha)
    flat_scores = tf.reshape(log_probs / penalty, [batch_size, k * vocab_size])

    # The 2K best extensions.
    top_scores, top_index = tf.math.top_k(flat_scores, k=2 * k)  # [B, 2K]
    top_log_probs = top_scores * penalty
    top_parent = top_index // vocab_size
    top_token = top_index % vocab_size
    top_seq = _write_column(
      tf.gather(alive_seq, top_parent, axis=1, batch_dims=1), step + 1, top_token
    )  # [B, 2K, W]
    # An EOS extension of a dead beam (log-probability ~ -INF, possible when the
    # vocabulary has fewer than 2K tokens) is not a hypothesis.
    top_is_eos = tf.logical_and(tf.equal(top_token, eos_id), top_log_probs > -INF / 2)

    # New alive beams: the K best extensions that did not end in EOS.
    # (EOS ones are excluded outright; among the 2K at most K end in EOS.)
    _, alive_pick = tf.math.top_k(
      tf.where(tf.equal(top_token, eos_id), float("-inf"), top_log_probs), k=k
    )
    new_alive_seq = tf.gather(top_seq, alive_pick, axis=1, batch_dims=1)
    new_alive_log_probs = tf.gather(top_log_probs, alive_pick, axis=1, batch_dims=1)
    parent = tf.gather(top_parent, alive_pick, axis=1, batch_dims=1)  # [B, K]
    flat_parent = tf.reshape(batch_pos * k + parent, [-1])
    new_cache = tf.nest.map_structure(lambda t: _gather_beams(t, flat_parent), new_cache)

    # New finished set: the K best among the old finished and the new EOS ones.
    all_seq = tf.concat([finished_seq, top_seq], axis=1)  # [B, 3K, W]
    all_scores = tf.concat([finished_scores, tf.where(top_is_eos, top_scores, -INF)], axis=1)
    all_flags = tf.concat([finished_flags, top_is_eos], axis=1)
    new_finished_scores, finished_pick = tf.math.top_k(all_scores, k=k)
    new_finished_seq = tf.gather(all_seq, finished_pick, axis=1, batch_dims=1)
    new_finished_flags = tf.gather(all_flags, finished_pick, axis=1, batch_dims=1)

    return (
      step + 1,
      new_alive_seq,
      new_alive_log_probs,
      new_finished_seq,
      new_finished_scores,
      new_finished_flags,
      new_cache,
    )

  loop_vars = (
    tf.constant(0),
    alive_seq,
    alive_log_probs,
    finished_seq,
    finished_scores,
    finished_flags,
    cache,
  )
  invariants = (
    tf.TensorShape([]),
    tf.TensorShape([None, k, alive_seq.shape[2]]),
    tf.TensorShape([None, k]),
    tf.TensorShape([None, k, alive_seq.shape[2]]),
    tf.TensorShape([None, k]),
    tf.TensorShape([None, k]),
    _cache_invariants(cache),
  )
  (step, alive_seq, alive_log_probs, finished_seq, finished_scores, finished_flags, _) = (
    tf.while_loop(cond, body, loop_vars, shape_invariants=invariants)
  )

  # Examples without any finished hypothesis fall back to their alive beams.
  any_finished = tf.reduce_any(finished_flags, axis=1)
  alive_scores = alive_log_probs / length_penalty(step, alpha)
  seq = tf.where(any_finished[:, None, None], finished_seq, alive_seq)
  scores = tf.where(any_finished[:, None], finished_scores, alive_scores)
  return seq[:, :, 1:], scores
