"""Serving faults: bad requests to exported SavedModels are answered or refused, never fatal.

Tiny models (test_export's configurations, one training step: the answers are
garbage, but the same garbage every time) are exported, moved and loaded with
tf.saved_model.load. Each bad request gets a defined answer or an
InvalidArgumentError naming the problem, and the loaded model answers a good
request as before afterwards. The export holds no absolute path of the machine
that wrote it.
"""

import os
import re
import shutil
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tf.text ops of the export)
from test_export import IMAGE
from test_export import KNOWN_PAIRS
from test_export import LATENT
from test_export import SOURCES
from test_export import TARGETS
from test_export import TRANSFORMER

from t2t_vqem import export as export_lib
from t2t_vqem.train import trainer as trainer_lib

BAD_UTF8 = [
  b"\xff\xfe the dog",
  b"caf\xc3",
  b"\xed\xa0\x80",
  b"\xc0\xaf",
]  # + a surrogate, overlong
# About 100,000 characters of words the vocabulary knows: cut to 63 subwords.
HUGE = "The dog sleeps and the man reads a book . " * 2400
BIG_BATCH = 10_000


def export_tiny(tmp, config):
  """Trains `config` one step, exports at the end, moves the export; (trainer, export dir)."""
  tsv = tmp / "pairs.tsv"
  tsv.write_text("".join(f"{s}\t{t}\n" for s, t in zip(SOURCES, TARGETS)), encoding="utf-8")
  gin.clear_config()
  gin.parse_config(
    KNOWN_PAIRS.format(tsv=tsv)
    + config
    + "\nTrainer.train_steps = 1\nTrainer.export_at_end = True\n"
  )
  trainer = trainer_lib.Trainer(str(tmp / "run"), data_dir=str(tmp / "data"))
  trainer.train()
  gin.clear_config()
  moved = tmp / "elsewhere" / "model"
  moved.parent.mkdir()
  shutil.move(str(tmp / "run" / "export"), str(moved))
  return trainer, str(moved)


class Served:
  """A loaded export: signature calls on numpy / lists, the good request's answer."""

  def __init__(self, export_dir, good):
    self.export_dir = export_dir
    self.signatures = tf.saved_model.load(export_dir).signatures
    self.good = good
    self.good_answer = self.call(good[0], **good[1])

  def call(self, name, **kwargs):
    out = self.signatures[name](**{k: tf.constant(v) for k, v in kwargs.items()})
    return {k: v.numpy() for k, v in out.items()}

  def refuses(self, pattern, name, **kwargs):
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
      self.call(name, **kwargs)
    self.still_serves()

  def still_serves(self):
    name, kwargs = self.good
    for key, value in self.call(name, **kwargs).items():
      np.testing.assert_array_equal(value, self.good_answer[key])


def good_translation(sources=SOURCES):
  return ("serving_default", {"sources": sources})


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("transformer")
  _, export_dir = export_tiny(tmp, TRANSFORMER)
  return tmp, Served(export_dir, good_translation())


@pytest.fixture(scope="module")
def latent(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("latent")
  trainer, export_dir = export_tiny(tmp, LATENT)
  return tmp, trainer.model, Served(export_dir, good_translation())


@pytest.fixture(scope="module")
def image(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("image")
  gin.clear_config()
  gin.parse_config(IMAGE + "\nTrainer.train_steps = 1\n")
  trainer = trainer_lib.Trainer(str(tmp / "run"), data_dir=str(tmp / "data"))
  trainer.train()
  gin.clear_config()
  images = next(iter(trainer.problem.batches("test", 2)))["targets"].numpy()
  return tmp, trainer.model, Served(str(tmp / "run" / "export"), ("encode", {"images": images}))


# -- text ----------------------------------------------------------------------------------


def test_sources_that_are_not_utf8_are_refused_by_row(transformer):
  _, served = transformer
  for bad in BAD_UTF8:
    served.refuses(
      r"serving_default: sources must be valid UTF-8; rows that are not:.*\[1\]",
      "serving_default",
      sources=[SOURCES[0], bad, SOURCES[1]],
    )
  served.refuses(
    r"rows that are not:.*\[0 2\]",
    "serving_default",
    sources=[BAD_UTF8[0], SOURCES[0], BAD_UTF8[2]],
  )
  # Valid UTF-8 of any script (and U+FFFD itself) is translated.
  out = served.call("serving_default", sources=["Der Hund schläft. 犬 \ufffd", "\x00"])
  assert out["translations"].shape == (2,)


def test_a_huge_source_is_cut_to_max_input_length(transformer):
  _, served = transformer
  assert len(HUGE) > 100_000
  start = time.perf_counter()
  huge = served.call("serving_default", sources=[HUGE, HUGE + "A woman sees the old dog."])
  seconds = time.perf_counter() - start
  # Both are cut to the same first subwords: the same (non-empty) translation.
  assert huge["translations"][0] == huge["translations"][1] != b""
  # A single 100,000-character word is one unknown subword.
  one_word = served.call("serving_default", sources=["x" * 100_000])
  assert one_word["translations"].shape == (1,)
  assert seconds < 60, seconds
  served.still_serves()


def test_a_batch_of_ten_thousand_sources(transformer):
  _, served = transformer
  sources = (SOURCES * BIG_BATCH)[:BIG_BATCH]
  start = time.perf_counter()
  out = served.call("serving_default", sources=sources)["translations"]
  seconds = time.perf_counter() - start
  print(f"{BIG_BATCH} sources in {seconds:.1f} s")
  assert out.shape == (BIG_BATCH,)
  good = served.good_answer["translations"]
  for i in range(3):  # each row's answer is that source's, as in a small batch
    assert (out[i::3] == good[i]).all()
  assert seconds < 120, seconds
  served.still_serves()


def test_empty_batches_and_sources(transformer):
  _, served = transformer
  assert served.call("serving_default", sources=np.zeros([0], object))["translations"].shape == (0,)
  out = served.call("serving_default", sources=["", "   \t", SOURCES[0]])["translations"]
  assert list(out[:2]) == [b"", b""] and out[2] == served.good_answer["translations"][0]
  served.still_serves()


def test_sources_of_another_shape_or_dtype_are_refused(transformer):
  _, served = transformer
  served.refuses(
    r"serving_default: sources must have shape \[\?\]; got\] \[\[1 2\]\]",
    "serving_default",
    sources=[SOURCES[:2]],
  )
  served.refuses(
    r"sources must have shape \[\?\]; got\] \[\[\]\]", "serving_default", sources=SOURCES[0]
  )
  served.refuses("expected to be a string tensor but is a int32", "serving_default", sources=[1, 2])


# -- latent: codes -------------------------------------------------------------------------


def test_codes_out_of_range_or_too_many_are_refused(latent):
  _, model, served = latent
  sources = SOURCES[:2]
  served.refuses(
    f"codes must be < the number of codes {model.num_codes}",
    "translate_with_codes",
    sources=sources,
    codes=np.array([[0, model.num_codes], [1, 2]], np.int32),
  )
  max_codes = -(-(64 + model.max_decode_extra) // 2**model.compress_steps)
  served.refuses(
    f"a row has more than max_codes {max_codes} codes",
    "translate_with_codes",
    sources=sources,
    codes=np.zeros([2, max_codes + 1], np.int32),
  )
  served.refuses(
    "sources and codes differ in number",
    "translate_with_codes",
    sources=sources,
    codes=np.zeros([3, 2], np.int32),
  )
  served.refuses(
    r"translate_with_codes: codes must have shape \[\?, \?\]; got\] \[\[2 2 2\]\]",
    "translate_with_codes",
    sources=sources,
    codes=np.zeros([2, 2, 2], np.int32),
  )
  served.refuses(
    "translate_with_codes: sources must be valid UTF-8",
    "translate_with_codes",
    sources=[BAD_UTF8[0], SOURCES[0]],
    codes=np.zeros([2, 2], np.int32),
  )


def test_codes_are_read_up_to_the_first_negative_one(latent):
  _, model, served = latent
  sources = SOURCES[:2]
  codes = np.array([[1, 2, 3], [4, 5, -1]], np.int32)
  want = served.call("translate_with_codes", sources=sources, codes=codes)["translations"]
  # However wide the padding after the first negative code: the same answer, quickly.
  wide = np.full([2, 100_000], -7, np.int32)
  wide[:, :3] = codes
  out = served.call("translate_with_codes", sources=sources, codes=wide)["translations"]
  np.testing.assert_array_equal(out, want)
  # No code (a negative first entry, or zero columns): empty translations.
  for none in (np.array([[-1, 2], [-5, -1]], np.int32), np.zeros([2, 0], np.int32)):
    out = served.call("translate_with_codes", sources=sources, codes=none)["translations"]
    assert list(out) == [b"", b""]
  empty = served.call(
    "translate_with_codes", sources=np.zeros([0], object), codes=np.zeros([0, 4], np.int32)
  )
  assert empty["translations"].shape == (0,)
  served.still_serves()


def test_latent_encode_faults(latent):
  _, _, served = latent
  served.refuses(
    r"encode: targets must be valid UTF-8; rows that are not:.*\[1\]",
    "encode",
    sources=SOURCES[:2],
    targets=[TARGETS[0], BAD_UTF8[1]],
  )
  out = served.call("encode", sources=[HUGE], targets=[HUGE])["codes"]
  assert out.shape[0] == 1 and out.shape[1] <= -(-64 // 2)  # the target is cut too
  empty = served.call("encode", sources=np.zeros([0], object), targets=np.zeros([0], object))
  assert empty["codes"].shape[0] == 0
  served.still_serves()


def test_latent_batch_of_ten_thousand_sources(latent):
  _, _, served = latent
  sources = (SOURCES * BIG_BATCH)[:BIG_BATCH]
  start = time.perf_counter()
  out = served.call("serving_default", sources=sources)["translations"]
  seconds = time.perf_counter() - start
  print(f"{BIG_BATCH} sources (latent) in {seconds:.1f} s")
  good = served.good_answer["translations"]
  assert out.shape == (BIG_BATCH,) and all((out[i::3] == good[i]).all() for i in range(3))
  assert seconds < 120, seconds
  served.still_serves()


# -- images --------------------------------------------------------------------------------


def test_images_of_another_shape_are_refused(image):
  _, model, served = image
  shape = "?, " + ", ".join(str(d) for d in model.image_shape)
  for bad in ([1, 16, 16, 3], [1, 32, 32, 1]):  # (another rank: in a subprocess, below)
    served.refuses(
      rf"encode: images must have shape \[{re.escape(shape)}\]; got\] "
      rf"\[\[{' '.join(map(str, bad))}\]\]",
      "encode",
      images=np.zeros(bad, np.uint8),
    )
  served.refuses("expected to be a uint8 tensor", "encode", images=np.zeros([1, 32, 32, 3]))
  for empty in ([0, 32, 32, 3], [0]):  # ([0]: an empty JSON list)
    codes = served.call("encode", images=np.zeros(empty, np.uint8))["codes"]
    assert codes.shape == (0,) + tuple(model.field_shape)
  served.still_serves()


def test_decode_and_sample_faults(image):
  _, model, served = image
  codes = served.good_answer["codes"]
  served.refuses(
    f"codes must be < the number of codes {model.num_codes}",
    "decode",
    codes=codes + model.num_codes,
  )
  served.refuses("codes must be >= 0", "decode", codes=codes - model.num_codes)
  served.refuses(
    r"decode: codes must have shape \[\?, 8, 8, 2\]; got\] \[\[1 4 4 2\]\]",
    "decode",
    codes=np.zeros([1, 4, 4, 2], np.int32),
  )
  empty = served.call("decode", codes=np.zeros((0,) + codes.shape[1:], np.int32))["images"]
  assert empty.shape == (0,) + tuple(model.image_shape)
  served.refuses("count must be >= 0", "sample", count=np.int32(-1), seed=np.int32(1))
  served.refuses(
    f"count must be <= max_sample_count {export_lib.MAX_SAMPLE_COUNT}",
    "sample",
    count=np.int32(2**31 - 1),
    seed=np.int32(1),
  )
  served.refuses(
    r"sample: count must be a scalar; got\] \[\[1 2\]\]",
    "sample",
    count=np.int32([1, 2]),
    seed=np.int32(1),
  )
  assert served.call("sample", count=np.int32(0), seed=np.int32(1))["images"].shape[0] == 0


# Runs in a fresh interpreter: a picture of another rank once crashed the process
# (oneDNN's Conv2D CHECK); it must be an InvalidArgumentError there too.
WRONG_RANK = r"""
import sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401
encode = tf.saved_model.load(sys.argv[1]).signatures["encode"]
for shape in ([32, 32, 3], [1, 1, 32, 32, 3], [32]):
  try:
    encode(images=tf.zeros(shape, tf.uint8))
  except tf.errors.InvalidArgumentError as e:
    print("refused:", [line for line in e.message.splitlines() if "must have shape" in line])
print(encode(images=tf.zeros([1, 32, 32, 3], tf.uint8))["codes"].shape)
"""


def test_an_image_of_another_rank_does_not_crash_the_process(image):
  _, model, served = image
  result = subprocess.run(
    [sys.executable, "-c", WRONG_RANK, served.export_dir],
    capture_output=True,
    text=True,
    timeout=300,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
  )
  assert result.returncode == 0, result.stderr[-3000:]
  for shape in ("[32 32 3]", "[1 1 32 32 3]", "[32]"):
    want = f"encode: images must have shape [?, 32, 32, 3]; got] [{shape}]"
    assert want in result.stdout, result.stdout
  assert f"(1, {', '.join(map(str, model.field_shape))})" in result.stdout


# -- relocatable ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["transformer", "latent", "image"])
def test_the_export_embeds_no_absolute_path(which, request):
  fixture = request.getfixturevalue(which)
  tmp, served = fixture[0], fixture[-1]
  needles = {str(tmp).encode(), os.path.realpath(tmp).encode()}
  files = 0
  for root, _, names in os.walk(served.export_dir):
    for name in names:
      data = open(os.path.join(root, name), "rb").read()
      files += 1
      for needle in needles:
        assert needle not in data, (os.path.join(root, name), needle)
  assert files >= 4  # saved_model.pb, variables, the vocabulary asset, export_info.json
