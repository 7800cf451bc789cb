"""Serving export: a tiny transformer and latent_transformer_em trained until they
translate three fixed sentence pairs exactly, exported at the end of training, moved,
reloaded in a process that imports only tensorflow and tensorflow_text; the served
translations are those known targets; bad inputs answered, not crashed on."""

import json
import os
import queue
import shutil
import subprocess
import sys
import threading

import gin
import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem import decode
from t2t_vqem import export
from t2t_vqem import registry
from t2t_vqem.train import trainer as trainer_lib

SOURCES = ["The dog sleeps.", "A man reads a book.", "The woman sees the old dog."]
TARGETS = ["Der Hund schläft.", "Ein Mann liest ein Buch.", "Die Frau sieht den alten Hund."]
LONG = "The dog sleeps and the cat sees the man . " * 60  # far beyond 64 subwords
LONGER = LONG + "A woman reads a book."  # same first 64 subwords
MAX_INPUT_LENGTH = 64  # translate_tsv.max_length below
STEPS = 250  # both tiny models reproduce TARGETS exactly from about 150 steps on

# Train, dev and test are the three pairs (in a TSV file), learnt by heart.
KNOWN_PAIRS = """
Trainer.problem = 'translate_tsv'
Trainer.batch_tokens = 256
Trainer.eval_every = 0
Trainer.eval_bleu_examples = 0
Trainer.log_every = 50
translate_tsv.train_path = '{tsv}'
translate_tsv.dev_path = '{tsv}'
translate_tsv.test_path = '{tsv}'
translate_tsv.vocab_size = 128
translate_tsv.max_length = 64
make_optimizer.learning_rate = 0.01
make_optimizer.warmup_steps = 10
make_optimizer.decay_steps = 100
"""

TRANSFORMER = """
Trainer.model = 'transformer'
transformer.hidden_size = 16
transformer.num_layers = 1
transformer.num_heads = 2
transformer.filter_size = 32
transformer.dropout = 0.0
"""

LATENT = """
Trainer.model = 'latent_transformer_em'
latent_transformer_em.hidden_size = 16
latent_transformer_em.num_layers = 1
latent_transformer_em.num_heads = 2
latent_transformer_em.filter_size = 32
latent_transformer_em.dropout = 0.0
latent_transformer_em.compress_steps = 1
soft_em.codebook_size = 16
soft_em.num_samples = 4
soft_em.init_from_first_batch = True
# Learns the three pairs by heart within STEPS: no warm-up, z_e layer-normalised (ours).
latent_transformer_em.mask_startup_steps = 0
latent_transformer_em.compress_output_norm = True
latent_transformer_em.latent_loss_start_step = 0
"""

# Runs in an interpreter of its own, started once for the module (starting one
# costs an import of tensorflow): t2t_vqem is made unimportable, only tensorflow and
# tensorflow_text are imported. Reads one request a line, [kind, export_dir,
# [[signature, {arg: value}], ...]]: loads that export anew and answers with one
# line, REPLY and then the signature names and, per request, the outputs or the
# error message ("text" exports: strings, and codes as int32; "images": [value,
# dtype name] arguments, outputs with their shapes).
SERVE = r"""
import json, sys
sys.modules["t2t_vqem"] = None  # any import of t2t_vqem would now fail
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tf.text ops)


def text(served, requests):
  results = []
  for name, kwargs in requests:
    args = {k: tf.constant(v, tf.int32 if k == "codes" else tf.string,
                           shape=[0, 0] if k == "codes" and not v else None)
            for k, v in kwargs.items()}
    try:
      out = served.signatures[name](**args)
    except tf.errors.InvalidArgumentError as e:
      results.append({"error": e.message})
      continue
    results.append({k: [t.decode("utf-8") for t in v.numpy()] if v.dtype == tf.string
                    else v.numpy().tolist() for k, v in out.items()})
  return results


def images(served, requests):
  results = []
  for name, kwargs in requests:
    try:
      args = {k: tf.constant(v, dtype) for k, (v, dtype) in kwargs.items()}
      out = served.signatures[name](**args)
      results.append({k: {"shape": v.shape.as_list(), "value": v.numpy().tolist()}
                      for k, v in out.items()})
    except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
      results.append({"error": type(e).__name__ + ": " + str(e)[:300]})
  return results


for line in sys.stdin:
  kind, export_dir, requests = json.loads(line)
  served = tf.saved_model.load(export_dir)
  results = {"text": text, "images": images}[kind](served, requests)
  print(REPLY + json.dumps({"signatures": sorted(served.signatures), "results": results,
                            "t2t_vqem_loaded": [m for m in sys.modules
                                                if m.startswith("t2t_vqem") and sys.modules[m]]}),
        flush=True)
"""
REPLY = "served: "


class Server:
  """The SERVE process: started on the first request, then kept (module fixture)."""

  def __init__(self, tmp):
    self.stderr_path, self.process = tmp / "serve.stderr", None

  def __call__(self, export_dir, requests, kind="text"):
    if self.process is None or self.process.poll() is not None:
      self.stderr = open(self.stderr_path, "w")  # closed by close()
      self.process = subprocess.Popen(
        [sys.executable, "-c", f"REPLY = {REPLY!r}\n" + SERVE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=self.stderr,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
      )
      self.lines = queue.Queue()
      threading.Thread(target=self._read, args=(self.process, self.lines), daemon=True).start()
    self.process.stdin.write(json.dumps([kind, str(export_dir), requests]) + "\n")
    self.process.stdin.flush()
    while True:
      try:
        line = self.lines.get(timeout=300)
      except queue.Empty:
        line = None
      if line is None:  # the process ended (or hangs): no answer
        self.close()
        raise AssertionError(self.stderr_path.read_text()[-3000:])
      if line.startswith(REPLY):
        return json.loads(line[len(REPLY) :])

  @staticmethod
  def _read(process, lines):
    for line in process.stdout:
      lines.put(line)
    lines.put(None)

  def close(self):
    if self.process is not None:
      self.process.kill()
      self.process.wait()
      self.stderr.close()
      self.process = None


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
  """serve(export_dir, requests, kind="text"): the SERVE process's answer."""
  server = Server(tmp_path_factory.mktemp("serve"))
  yield server
  server.close()


def train_and_export(tmp, config, steps, export_at_end):
  """Trains on the known pairs, exports, moves the export elsewhere; returns
  (trainer, server or None, export).

  With export_at_end the Trainer exports; otherwise trainer.export() does, and
  its serving module (tf.functions already traced) is returned for in-process calls.
  """
  tsv = tmp / "pairs.tsv"
  tsv.write_text("".join(f"{s}\t{t}\n" for s, t in zip(SOURCES, TARGETS)), encoding="utf-8")
  gin.clear_config()
  gin.parse_config(
    KNOWN_PAIRS.format(tsv=tsv) + config + f"\nTrainer.train_steps = {steps}\n"
    f"Trainer.export_at_end = {export_at_end}\n"
  )
  trainer = trainer_lib.Trainer(str(tmp / "run"), data_dir=str(tmp / "data"))
  trainer.train()
  # The model has learnt the pairs: its own greedy translations are the targets.
  assert decode.translate(trainer.model, trainer.vocab, SOURCES) == TARGETS
  server = None if export_at_end else trainer.export()
  gin.clear_config()
  info = json.loads((tmp / "run" / "export" / "assets.extra" / "export_info.json").read_text())
  assert info["step"] == steps and info["max_input_length"] == MAX_INPUT_LENGTH
  moved = tmp / "elsewhere" / "model"
  moved.parent.mkdir()
  shutil.move(str(tmp / "run" / "export"), str(moved))
  return trainer, server, str(moved)


def texts(tensor):
  return [text.decode("utf-8") for text in tensor.numpy()]


@pytest.fixture(scope="module")
def transformer_export(tmp_path_factory):
  return train_and_export(
    tmp_path_factory.mktemp("transformer"), TRANSFORMER, steps=STEPS, export_at_end=True
  )


@pytest.fixture(scope="module")
def latent_export(tmp_path_factory):
  return train_and_export(
    tmp_path_factory.mktemp("latent"), LATENT, steps=STEPS, export_at_end=False
  )


def test_transformer_export_serves_the_known_translations(transformer_export, serve):
  _, _, export_dir = transformer_export
  out = serve(
    export_dir,
    [
      ["serving_default", {"sources": SOURCES}],
      ["serving_default", {"sources": SOURCES[::-1]}],
      ["serving_default", {"sources": ["", "   ", SOURCES[0]]}],
      ["serving_default", {"sources": [LONG, LONGER]}],
      ["serving_default", {"sources": []}],
    ],
  )
  assert out["t2t_vqem_loaded"] == []
  assert out["signatures"] == ["serving_default"]
  translations, backwards, empty, long, none = [r["translations"] for r in out["results"]]
  assert translations == TARGETS
  assert backwards == TARGETS[::-1]
  assert empty == ["", "", TARGETS[0]]
  # Sources are cut to max_input_length subwords: the tails differ, not the outputs.
  assert long[0] == long[1] != ""
  assert none == []


def test_latent_export_translates_encodes_and_decodes_codes(latent_export, serve):
  trainer, server, export_dir = latent_export
  model = trainer.model
  assert texts(server.translate(tf.constant(SOURCES))["translations"]) == TARGETS
  codes = server.encode(tf.constant(SOURCES), tf.constant(TARGETS))["codes"].numpy()
  target_lengths = [len(ids) for ids in decode.encode_texts(trainer.vocab, TARGETS)]
  assert codes.dtype == np.int32
  assert codes.shape == (3, max(-(-n // 2) for n in target_lengths))  # ceil(T / 2^n_c)
  for row, n in zip(codes, target_lengths):
    assert (row[: -(-n // 2)] >= 0).all() and (row[-(-n // 2) :] == -1).all()
  assert (codes < model.num_codes).all()
  # Each code is the nearest codebook entry (numpy) of its compressed target position.
  inputs = tf.ragged.constant(decode.encode_texts(trainer.vocab, SOURCES)).to_tensor()
  outputs = tf.ragged.constant(decode.encode_texts(trainer.vocab, TARGETS)).to_tensor()
  memory, memory_mask = model.encode_source(inputs)
  z_e, latent_mask = model.encode_target(outputs, memory, memory_mask)
  codebook = model.bottleneck.embed(tf.range(model.num_codes)).numpy().astype(np.float64)
  z_e = z_e.numpy().astype(np.float64)[latent_mask.numpy()]
  distances = ((z_e[:, None, :] - codebook[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(codes[codes >= 0], distances.argmin(-1))
  # The targets' own codes decode to the targets (the latent model reconstructs them).
  with_codes = texts(server.translate_with_codes(tf.constant(SOURCES), codes)["translations"])
  assert with_codes == TARGETS

  # translate_with_codes on the latent predictor's codes is serving_default.
  @tf.function
  def predicted_codes(inputs):
    memory, mask = model.encode_source(inputs)
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)  # per row, as decode does
    max_latents = (lengths + model.max_decode_extra + 1) // 2
    found, count = model.predict_latents(memory, mask, max_latents, 1, 0.0)
    return tf.where(tf.sequence_mask(count, tf.shape(found)[1]), found, -1)

  predicted = predicted_codes(inputs)
  assert (
    texts(server.translate_with_codes(tf.constant(SOURCES), predicted)["translations"]) == TARGETS
  )

  out = serve(
    export_dir,
    [
      ["serving_default", {"sources": SOURCES}],
      ["encode", {"sources": SOURCES, "targets": TARGETS}],
      ["translate_with_codes", {"sources": SOURCES, "codes": codes.tolist()}],
      ["serving_default", {"sources": ["", LONG]}],
      ["encode", {"sources": [], "targets": []}],
      ["translate_with_codes", {"sources": [], "codes": []}],
      ["translate_with_codes", {"sources": SOURCES[:1], "codes": [[model.num_codes]]}],
      ["translate_with_codes", {"sources": SOURCES[:2], "codes": [[0]]}],
      ["encode", {"sources": SOURCES[:2], "targets": TARGETS[:1]}],
    ],
  )
  assert out["t2t_vqem_loaded"] == []
  assert out["signatures"] == ["encode", "serving_default", "translate_with_codes"]
  results = out["results"]
  assert results[0]["translations"] == TARGETS
  assert results[1]["codes"] == codes.tolist()
  assert results[2]["translations"] == TARGETS
  assert results[3]["translations"][0] == ""
  assert results[4]["codes"] == [] and results[5]["translations"] == []
  assert "number of codes" in results[6]["error"]
  assert "differ in number" in results[7]["error"]
  assert "differ in number" in results[8]["error"]


def test_saved_model_cli_lists_the_signatures(latent_export):
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  if not os.path.exists(cli):
    pytest.skip("saved_model_cli is not installed next to this python")
  result = subprocess.run(
    [cli, "show", "--dir", latent_export[2], "--all"], capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-3000:]
  for name in ("serving_default", "encode", "translate_with_codes"):
    assert f"signature_def['{name}']" in result.stdout
  assert "inputs['sources']" in result.stdout and "outputs['codes']" in result.stdout


def test_exporter_cli(transformer_export, tmp_path):
  trainer = transformer_export[0]
  run = trainer.output_dir
  data_dir = os.path.dirname(trainer.problem.problem_dir)
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "t2t_vqem.cli.exporter",
      f"--output_dir={run}",
      f"--data_dir={data_dir}",
      f"--export_dir={tmp_path / 'cli'}",
      "--max_input_length=8",
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "serving_default" in result.stdout
  info = json.loads((tmp_path / "cli" / "assets.extra" / "export_info.json").read_text())
  assert info["max_input_length"] == 8 and info["checkpoint"].endswith(f"ckpt-{STEPS}")
  assert (tmp_path / "cli" / "assets" / os.path.basename(trainer.problem.vocab_path)).is_file()

  result = subprocess.run(
    [sys.executable, "-m", "t2t_vqem.cli.exporter", f"--output_dir={tmp_path}"],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "a training run?" in result.stderr


@pytest.mark.parametrize("vocab_type", ["sentencepiece", "wordpiece"])
def test_either_vocab_type_serves_what_the_model_decodes(tmp_path, vocab_type, serve):
  """An untrained tiny transformer, exported with each vocabulary type and moved:
  served without t2t_vqem, its translations are the ones decoded in process."""
  tsv = tmp_path / "pairs.tsv"
  tsv.write_text("".join(f"{s}\t{t}\n" for s, t in zip(SOURCES, TARGETS)), encoding="utf-8")
  gin.clear_config()
  problem = registry.build_problem(
    "translate_tsv",
    **{f"{split}_path": str(tsv) for split in ("train", "dev", "test")},
    data_dir=str(tmp_path / "data"),
    vocab_size=128,
    max_length=MAX_INPUT_LENGTH,
    vocab_type=vocab_type,
  )
  model = registry.build_model(
    "transformer",
    vocab_size=problem.vocab.size,
    **dict(hidden_size=16, num_layers=1, num_heads=2, filter_size=32, max_decode_extra=8),
  )
  export.export_model(model, problem, str(tmp_path / "export"))
  moved = tmp_path / "elsewhere" / "model"
  moved.parent.mkdir()
  shutil.move(str(tmp_path / "export"), str(moved))
  assert (moved / "assets" / os.path.basename(problem.vocab_path)).is_file()
  # Relocatable: no file of the export names where it was written or what it was made from.
  for path in moved.rglob("*"):
    assert not path.is_file() or str(tmp_path).encode() not in path.read_bytes(), path
  sources = SOURCES + ["Grüße aus Köln – 20 % mehr!", ""]
  wanted = decode.translate(model, problem.vocab, sources)
  out = serve(str(moved), [["serving_default", {"sources": sources}]])
  assert out["t2t_vqem_loaded"] == []
  assert out["results"][0]["translations"] == wanted[:-1] + [""] and any(wanted)


# -- image models ---------------------------------------------------------------------

IMAGE = """
Trainer.model = 'image_vqvae_em'
Trainer.problem = 'image_shapes'
Trainer.batch_size = 8
Trainer.train_steps = 3
Trainer.eval_pictures = 0
Trainer.export_at_end = True
image_shapes.num_train = 40
image_shapes.num_eval = 8
image_vqvae_em.hidden_size = 8
image_vqvae_em.latents_per_position = 2
image_vqvae_em.latent_dim = 8
soft_em.codebook_size = 16
soft_em.num_samples = 3
soft_em.init_from_first_batch = True
image_vqvae_em.prior_hidden_size = 8
image_vqvae_em.prior_layers = 1
image_vqvae_em.prior_heads = 2
image_vqvae_em.prior_filter_size = 16
image_vqvae_em.prior_block_length = 16
"""


def test_image_export_encodes_decodes_and_samples_without_t2t_vqem(tmp_path, serve):
  gin.clear_config()
  gin.parse_config(IMAGE)
  trainer = trainer_lib.Trainer(str(tmp_path / "run"), data_dir=str(tmp_path / "data"))
  trainer.train()
  gin.clear_config()
  model = trainer.model
  images = next(iter(trainer.problem.batches("test", 3)))["targets"]
  codes = model.encode(images)
  bad_codes = codes.numpy().copy()
  bad_codes[0, 0, 0, 0] = 16
  requests = [
    ["encode", {"images": [images.numpy().tolist(), "uint8"]}],
    ["decode", {"codes": [codes.numpy().tolist(), "int32"]}],
    ["sample", {"count": [2, "int32"], "seed": [7, "int32"]}],
    ["sample", {"count": [2, "int32"], "seed": [7, "int32"]}],
    ["decode", {"codes": [bad_codes.tolist(), "int32"]}],
    ["sample", {"count": [-1, "int32"], "seed": [7, "int32"]}],
    ["encode", {"images": [np.zeros([0, 32, 32, 3]).tolist(), "uint8"]}],
    ["encode", {"images": [np.zeros([1, 16, 16, 3]).tolist(), "uint8"]}],
    ["encode", {"images": [np.zeros([1, 32, 32, 3]).tolist(), "float32"]}],
  ]
  served = serve(tmp_path / "run" / "export", requests, kind="images")
  assert served["t2t_vqem_loaded"] == []
  assert served["signatures"] == ["decode", "encode", "sample", "serving_default"]
  got = served["results"]
  np.testing.assert_array_equal(got[0]["codes"]["value"], codes.numpy())
  # encode is the nearest codebook row of every encoder output (Eq. 1), in numpy.
  z_e = model.encode_continuous(images).numpy().astype(np.float64)
  codebook = model.bottleneck.codebook.numpy().astype(np.float64)
  d2 = ((z_e[..., None, :] - codebook) ** 2).sum(-1)
  np.testing.assert_array_equal(got[0]["codes"]["value"], d2.argmin(-1))
  # decode is the decoder's most likely sub-pixels given those codebook rows.
  rows = tf.constant(codebook[np.array(got[0]["codes"]["value"])], tf.float32)
  want = np.argmax(model.decode_logits(rows).numpy(), axis=-1)
  np.testing.assert_array_equal(got[1]["images"]["value"], want)
  samples = np.array(got[2]["images"]["value"])
  assert samples.shape == (2, 32, 32, 3)
  np.testing.assert_array_equal(samples, got[3]["images"]["value"])  # same seed, same pictures
  np.testing.assert_array_equal(samples, model.sample(2, tf.constant([7, 0])).numpy())
  assert "codes must be < the number of codes 16" in got[4]["error"]
  assert "count must be >= 0" in got[5]["error"]
  assert got[6]["codes"]["shape"] == [0, 8, 8, 2]
  assert "error" in got[7] and "error" in got[8]  # wrong shape, wrong dtype: refused
