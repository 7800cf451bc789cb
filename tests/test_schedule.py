"""The learning-rate schedule: linear warm-up then exponential decay, against its
formula in numpy, and the step convention seen by a Keras optimizer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem.train import schedule

PEAK, WARMUP, DECAY_RATE, DECAY_STEPS = 2e-3, 10, 0.5, 40


def expected_lr(step, peak=PEAK, warmup=WARMUP, decay_rate=DECAY_RATE, decay_steps=DECAY_STEPS):
  """The documented formula in float64: n = step + 1 is the number of the update."""
  n = np.float64(step) + 1.0
  warm = min(1.0, n / warmup) if warmup else 1.0
  return peak * warm * decay_rate ** (max(0.0, n - warmup) / decay_steps)


@pytest.mark.parametrize(
  "step", [0, 1, WARMUP - 2, WARMUP - 1, WARMUP, WARMUP + 1, WARMUP + DECAY_STEPS - 1, 1000]
)
def test_schedule_follows_its_formula(step):
  lr = schedule.WarmupExponentialDecay(PEAK, WARMUP, DECAY_RATE, DECAY_STEPS)
  np.testing.assert_allclose(float(lr(tf.constant(step, tf.int64))), expected_lr(step), rtol=1e-6)


def test_known_values_at_the_turning_points():
  lr = schedule.WarmupExponentialDecay(PEAK, WARMUP, DECAY_RATE, DECAY_STEPS)
  values = {s: float(lr(s)) for s in (0, WARMUP - 1, WARMUP, WARMUP - 1 + DECAY_STEPS, 1000)}
  assert values[0] == pytest.approx(PEAK / WARMUP, rel=1e-6)  # the first update is not wasted
  assert values[WARMUP - 1] == pytest.approx(PEAK, rel=1e-6)  # peak at the warmup-th update
  assert values[WARMUP] < PEAK  # and only there
  assert values[WARMUP - 1 + DECAY_STEPS] == pytest.approx(PEAK * DECAY_RATE, rel=1e-6)
  assert values[1000] == pytest.approx(
    PEAK * DECAY_RATE ** ((1001 - WARMUP) / DECAY_STEPS), rel=1e-5
  )
  # Rising during warm-up, falling after it.
  rates = [float(lr(s)) for s in range(3 * WARMUP)]
  assert np.all(np.diff(rates[:WARMUP]) > 0) and np.all(np.diff(rates[WARMUP - 1 :]) < 0)


def test_no_warmup_starts_at_the_peak():
  lr = schedule.WarmupExponentialDecay(PEAK, 0, DECAY_RATE, DECAY_STEPS)
  for step in (0, 5, 100):
    np.testing.assert_allclose(float(lr(step)), expected_lr(step, warmup=0), rtol=1e-6)


def test_the_optimizer_applies_the_rate_of_each_update():
  """SGD on loss = w (gradient 1): update i moves w by exactly lr(step = i - 1)."""
  optimizer = schedule.make_optimizer(
    "sgd", learning_rate=PEAK, warmup_steps=WARMUP, decay_rate=DECAY_RATE, decay_steps=DECAY_STEPS
  )
  w = keras.Variable(0.0, dtype="float32")
  optimizer.build([w])
  moves = []
  for _ in range(WARMUP + 2):
    before = float(w.numpy())
    optimizer.apply_gradients([(tf.constant(1.0), w)])
    moves.append(before - float(w.numpy()))
  np.testing.assert_allclose(moves, [expected_lr(s) for s in range(WARMUP + 2)], rtol=1e-4)
  assert moves[0] > 0


def test_config_round_trip_and_bad_optimizer():
  lr = schedule.WarmupExponentialDecay(PEAK, WARMUP, DECAY_RATE, DECAY_STEPS)
  again = schedule.WarmupExponentialDecay(**lr.get_config())
  assert float(again(7)) == float(lr(7))
  with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
    schedule.make_optimizer("rmsprop")
