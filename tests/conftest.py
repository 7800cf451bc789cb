"""Test setup: quiet TensorFlow, two logical CPU devices for multi-replica tests.

The CPU is split before TensorFlow initialises its runtime, so any test can
build MirroredStrategy(["CPU:0", "CPU:1"]); single-device code runs on CPU:0.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
if len(tf.config.get_logical_device_configuration(_cpu) or []) < 2:
  tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import t2t_vqem.models  # noqa: E402,F401  (registers the built-in models)
import t2t_vqem.problems  # noqa: E402,F401  (registers the built-in problems)
