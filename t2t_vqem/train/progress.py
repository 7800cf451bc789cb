"""One console line of training progress: step, losses, speed, ETA."""

import datetime
import time


class Progress:
  """Measures steps/s and items/s between calls and estimates the time left."""

  def __init__(self, start_step, total_steps, unit="tokens"):
    self.total_steps, self.unit = total_steps, unit
    self._last_step = start_step
    self._last_time = time.perf_counter()
    self._items = 0.0

  def add_items(self, count):
    self._items += float(count)

  def line(self, step, values, learning_rate):
    now = time.perf_counter()
    elapsed = max(now - self._last_time, 1e-9)
    steps_per_s = (step - self._last_step) / elapsed
    items_per_s = self._items / elapsed
    left = (self.total_steps - step) / steps_per_s if steps_per_s > 0 else 0
    self._last_step, self._last_time, self._items = step, now, 0.0
    shown = "  ".join(f"{k} {float(v):.4f}" for k, v in sorted(values.items()))
    eta = datetime.timedelta(seconds=int(left))
    return (
      f"step {step}/{self.total_steps}  {shown}  lr {float(learning_rate):.2e}  "
      f"{steps_per_s:.2f} steps/s  {items_per_s:,.0f} {self.unit}/s  ETA {eta}"
    )
