"""The fused CPU kernel of a VectorQuantizer training step (vq_kernel.cc).

After the distance GEMM, one pass over each row does the E step (argmax, or
inverse-CDF draws for soft EM), Eq. 11's mean of the drawn codes, the row's
distortion and the M step's counts and sums, where TensorFlow's own ops take
five to eight passes (benchmarks/bottleneck.py, BENCHMARKS.md).

The kernel is compiled on first use with the C++ compiler TensorFlow was
built to work with (g++, C++17, TensorFlow's headers) and cached under
$T2T_VQEM_CACHE (default ~/.cache/t2t_vqem), keyed by the source, the
TensorFlow version and the flags. If it cannot be built or loaded, or
T2T_VQEM_FUSED_KERNEL=0, `available()` is False and the layer uses
TensorFlow ops for the same computation, with a warning saying why.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile

from absl import logging
import tensorflow as tf

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vq_kernel.cc")
_state = {}


def _cpu_flags():
  """-mavx2 -mfma where this CPU has them (the build is per machine)."""
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((line.split(":", 1)[1].split() for line in f
                    if line.startswith("flags")), [])
  except OSError:
    flags = []
  return [f"-m{name}" for name in ("avx2", "fma") if name in flags]


def _build():
  """Path of the compiled library, building it if needed."""
  compiler = os.environ.get("CXX") or shutil.which("g++")
  if not compiler:
    raise RuntimeError("no C++ compiler (g++ or $CXX) on PATH")
  flags = (["-std=c++17", "-shared", "-fPIC", "-O3",
            "-Wno-deprecated-declarations"] + _cpu_flags() +
           tf.sysconfig.get_compile_flags())
  link = tf.sysconfig.get_link_flags()
  with open(_SOURCE, "rb") as f:
    source = f.read()
  key = hashlib.sha256(
      source + " ".join([compiler, tf.__version__] + flags + link).encode()
  ).hexdigest()[:16]
  cache = os.environ.get("T2T_VQEM_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "t2t_vqem")
  target = os.path.join(cache, f"vq_kernel_{key}.so")
  if os.path.exists(target):
    return target
  os.makedirs(cache, exist_ok=True)
  logging.info("Compiling the fused VQ kernel into %s (once per machine).",
               target)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
  os.close(fd)
  try:
    result = subprocess.run([compiler] + flags + [_SOURCE, "-o", tmp] + link,
                            capture_output=True, text=True, check=False)
    if result.returncode:
      raise RuntimeError(f"{compiler} failed:\n{result.stderr[-2000:]}")
    os.replace(tmp, target)  # atomic: concurrent builders agree
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return target


def _library():
  if "library" not in _state:
    _state["library"] = None
    if os.environ.get("T2T_VQEM_FUSED_KERNEL", "1") == "0":
      _state["why"] = "T2T_VQEM_FUSED_KERNEL=0"
    else:
      try:
        _state["library"] = tf.load_op_library(_build())
      except Exception as e:  # pylint: disable=broad-except
        _state["why"] = f"{type(e).__name__}: {e}"
        logging.warning("The fused VQ kernel is unavailable (%s); the layer "
                        "uses TensorFlow ops instead (slower, same result).",
                        _state["why"])
  return _state["library"]


def available():
  """True if the kernel is built and loaded (it runs on CPU only)."""
  return _library() is not None


def quantize_rows(xe, half_norms, x, codebook, keep, uniforms, scale=2.0):
  """One block's row-wise VQ step (see vq_kernel.cc for the equations).

  Args:
    xe: float32 [N, K], x e^T.
    half_norms: float32 [K], ||e_j||^2 / 2.
    x: float32 [N, d].
    codebook: float32 [K, d].
    keep: bool [N]; rows not kept get indices and q but distortion 0 and no
      part in counts and sums.
    uniforms: float32 [N, S] in [0, 1): S draws per row by inverse CDF of
      softmax(scale * (xe - half_norms)); S = 0 for the hard E step (argmax).
    scale: the soft E step's logit scale, 2 / temperature.

  Returns:
    indices int32 [N, max(S, 1)], quantized float32 [N, d] (Eq. 11),
    distortion float32 [N] (||x_i - q_i||^2), counts float32 [K],
    sums float32 [K, d]. None of them has a gradient.
  """
  library = _library()
  if library is None:
    raise RuntimeError(f"the fused VQ kernel is unavailable: {_state['why']}")
  return library.vqem_quantize_rows(
      xe, half_norms, x, codebook, keep, uniforms, scale=float(scale))


tf.no_gradient("VqemQuantizeRows")
