"""SavedModel export for serving: text in, translation out; images in, codes out, and back.

`export_model(model, problem, export_dir)` writes a SavedModel whose
signatures do tokenization, decoding and detokenization inside the graph, with
tensorflow and tensorflow-text ops only. Loading it needs

    import tensorflow as tf
    import tensorflow_text  # registers the tf.text ops the graph uses
    served = tf.saved_model.load(export_dir)

and not t2t_vqem. The vocabulary travels inside the SavedModel
(t2t_vqem.serving_vocab: its file is an asset, `assets/vocab.*`), so the export
directory can be moved or copied.

Signatures of a translation model (`transformer`, `latent_transformer_vq`,
`latent_transformer_em`):

  serving_default(sources: string [B]) -> {"translations": string [B]}

and of a latent model also

  encode(sources: string [B], targets: string [B]) -> {"codes": int32 [B, L]}
  translate_with_codes(sources: string [B], codes: int32 [B, L])
      -> {"translations": string [B]}

`encode` gives the latent code of each target (the bottleneck's most probable
code of each compressed target position: the nearest codebook entry for the EM
bottlenecks, whose Monte-Carlo samples are not drawn), one code per 2^n_c
target subwords (EOS included); rows shorter than L are padded with -1.
`translate_with_codes` decodes the codes of each row up to its first negative
entry in one parallel pass (the latent predictor is not used); a code outside
[0, num_codes) is an InvalidArgumentError, and so is a row of more than
max_codes = ceil((max_input_length + the model's max_decode_extra) / 2^n_c)
codes (the most the model decodes for a source; more would be one attention
pass over any length asked for).

Bad input never brings the server down (tests/test_serving_faults.py):
  * every source (and target) is cut to its first `max_input_length - 1`
    subwords before EOS is appended, so the model never sees more than
    `max_input_length` tokens (default: the problem's `max_length`, the
    longest example of training) and decodes a bounded length, however long
    the text;
  * a source with no subword (empty or only spaces) gets an empty translation;
  * a batch of zero sentences gives zero translations (zero rows of codes);
  * a string that is not valid UTF-8 is an InvalidArgumentError naming the
    input and its rows ("serving_default: sources must be valid UTF-8; rows
    that are not: [1]"); the whole batch is refused (no guess at the encoding);
  * input of another dtype is refused by the signature, of another shape by a
    check when it runs (a loaded signature checks dtypes only): an
    InvalidArgumentError "serving_default: sources must have shape [?]; got
    [1 2]".
Decoding settings (beam size, length penalty) are fixed at export time.

Signatures of an image model (`image_vqvae_vq`, `image_vqvae_em`), H x W x C
the problem's picture shape and h x w x n its latent field:

  encode(images: uint8 [B, H, W, C]) -> {"codes": int32 [B, h, w, n]}
      the bottleneck's most probable code of every latent vector (for the EM
      bottlenecks the nearest, Eq. 1, also in soft EM);
  decode(codes: int32 [B, h, w, n]) -> {"images": uint8 [B, H, W, C]}
      the most likely value of every sub-pixel given the codes; a code outside
      [0, num_codes) is an InvalidArgumentError;
  sample(count: int32 [], seed: int32 []) -> {"images": uint8 [count, H, W, C]}
      codes drawn from the latent prior (temperature 1), then decoded; the same
      seed gives the same pictures; count < 0 or > max_sample_count (1024
      unless the server is made with another) is an InvalidArgumentError.
  serving_default is `encode`.

Pictures (or codes) of another dtype are refused by the signature, of another
shape by a check when the signature runs (InvalidArgumentError "encode:
images must have shape [?, 32, 32, 3]; got [1 16 16 3]"; without it a
picture of another rank crashes the process in Conv2D); zero pictures or
codes (any input with no element: an empty JSON list is shape [0]) or count 0
give zero rows.

Extension point: the serving module is chosen by the interface the model
declares (`t2t_vqem.registry.model_interface`, `SERVERS`); add one with
`register_server`.
"""

import json
import os

from absl import logging
import gin
import tensorflow as tf

from t2t_vqem import registry
from t2t_vqem import serving_vocab

EXPORT_INFO = "export_info.json"  # in the SavedModel's assets.extra/


_STRINGS = tf.TensorSpec([None], tf.string)


def _checked(tensor, spec, what):
  """tensor, checked when the graph runs to have the shape of its signature's spec.

  A loaded SavedModel's signature refuses another dtype but runs on any shape,
  its graph assuming the spec's rank (a picture of another rank crashes
  oneDNN's Conv2D), so the runtime shape is checked as text, which nothing
  folds away: an InvalidArgumentError "encode: images must have shape [?, 32,
  32, 3]; got [1 16 16 3]" ("sample: count must be a scalar; got [1 2]"
  for a scalar spec, int). Where the spec fixes all but the batch axis
  (pictures, their codes), a tensor with no element is zero rows (an empty
  JSON list is shape [0]).
  """
  dims = spec.shape.as_list()
  if not dims:  # a scalar's shape is a constant of the graph: check its value's text
    text = tf.strings.format("{}", tensor, summarize=3)
    check = tf.debugging.Assert(
      tf.strings.regex_full_match(text, r"-?\d+"), [f"{what} must be a scalar; got", text]
    )
    with tf.control_dependencies([check]):
      return tf.identity(tensor)
  shape = tf.strings.format("{}", tf.shape(tensor), summarize=-1)
  pattern = r"\[" + " ".join(r"\d+" if d is None else str(d) for d in dims) + r"\]"
  ok = tf.strings.regex_full_match(shape, pattern)
  rows_only = len(dims) >= 2 and None not in dims[1:]
  if rows_only:
    ok = tf.logical_or(ok, tf.equal(tf.size(tensor), 0))
  expected = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
  check = tf.debugging.Assert(ok, [f"{what} must have shape {expected}; got", shape])
  with tf.control_dependencies([check]):
    if not rows_only:
      return tf.identity(tensor)
    # (a tf.reshape to [-1, ...] would be removed as redundant: the graph takes
    # the tensor's shape from the spec)
    empty = tf.zeros([0] + dims[1:], spec.dtype)
    return tf.cond(tf.size(tensor) > 0, lambda: tf.identity(tensor), lambda: empty)


def _checked_utf8(text, what):
  """Strings [B], checked to be valid UTF-8: else an InvalidArgumentError
  "{what} must be valid UTF-8; rows that are not: [...]". One pass over the bytes."""
  valid = tf.equal(tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace"), text)
  check = tf.debugging.Assert(
    tf.reduce_all(valid),
    [f"{what} must be valid UTF-8; rows that are not:", tf.where(~valid)[:, 0]],
    summarize=10,
  )
  with tf.control_dependencies([check]):
    return tf.identity(text)


def _checked_text(text, what):
  """Strings of a text signature: shape [B], valid UTF-8."""
  return _checked_utf8(_checked(text, _STRINGS, what), what)


def _if_any_rows(batch, fn, empty):
  """fn() if batch > 0 else `empty` (a zero-row tensor), inside the graph."""
  return tf.cond(batch > 0, fn, lambda: empty)


class _Untracked:
  """Holds an object out of sight of tf.Module / SavedModel tracking."""

  def __init__(self, value):
    self.value = value


class _Server(tf.Module):
  """A serving module over an untracked Keras model and its plain tf.Variables.

  The Keras model is held untracked and its variables are tracked as the
  plain tf.Variables they wrap (`model_variables`): a Keras 3 variable saved as
  such gets a second, unconnected copy in the SavedModel, which
  tf.saved_model.load handles but the TF1 session loader (saved_model_cli run,
  TF Serving) does not ("Could not find variable ...").
  """

  def __init__(self, model, name):
    super().__init__(name=name)
    self._model = _Untracked(model)
    self.model_variables = [getattr(v, "value", v) for v in model.variables]

  @property
  def model(self):
    return self._model.value


MAX_SAMPLE_COUNT = 1024  # pictures one `sample` call may ask for


class ImageServer(_Server):
  """Serving module of an image model: `encode`, `decode`, `sample`.

  max_sample_count bounds `sample`'s count (a scalar asking for any amount of
  work: 1024 pictures of the tiny test model take ~10 s on a CPU).
  """

  def __init__(self, model, max_sample_count=MAX_SAMPLE_COUNT):
    super().__init__(model, "image_server")
    self.images_spec = tf.TensorSpec((None,) + tuple(model.image_shape), tf.uint8)
    self.codes_spec = tf.TensorSpec((None,) + tuple(model.field_shape), tf.int32)
    self.max_sample_count = int(max_sample_count)
    self.encode = tf.function(self._encode, input_signature=[self.images_spec])
    self.decode = tf.function(self._decode, input_signature=[self.codes_spec])
    self.sample = tf.function(self._sample, input_signature=[tf.TensorSpec([], tf.int32)] * 2)

  @classmethod
  def for_problem(cls, model, problem, **unused_text_settings):
    return cls(model)

  def signatures(self):
    return {
      "serving_default": self.encode,
      "encode": self.encode,
      "decode": self.decode,
      "sample": self.sample,
    }

  def info(self):
    return {
      "image_shape": list(self.model.image_shape),
      "field_shape": list(self.model.field_shape),
      "num_codes": self.model.num_codes,
      "max_sample_count": self.max_sample_count,
      "signatures": sorted(self.signatures()),
    }

  def _encode(self, images):
    images = _checked(images, self.images_spec, "encode: images")
    empty = tf.zeros((0,) + tuple(self.model.field_shape), tf.int32)
    return {"codes": _if_any_rows(tf.shape(images)[0], lambda: self.model.encode(images), empty)}

  def _decode(self, codes):
    codes = _checked(codes, self.codes_spec, "decode: codes")
    size = self.model.num_codes
    checks = [
      tf.debugging.assert_non_negative(codes, message="decode: codes must be >= 0"),
      tf.debugging.assert_less(
        codes, size, message=f"decode: codes must be < the number of codes {size}"
      ),
    ]
    with tf.control_dependencies(checks):
      codes = tf.identity(codes)
    empty = tf.zeros((0,) + tuple(self.model.image_shape), tf.uint8)
    return {"images": _if_any_rows(tf.shape(codes)[0], lambda: self.model.decode(codes), empty)}

  def _sample(self, count, seed):
    scalar = tf.TensorSpec([], tf.int32)
    count, seed = _checked(count, scalar, "sample: count"), _checked(seed, scalar, "sample: seed")
    checks = [
      tf.debugging.assert_non_negative(count, message="sample: count must be >= 0"),
      tf.debugging.assert_less_equal(
        count,
        self.max_sample_count,
        message=f"sample: count must be <= max_sample_count {self.max_sample_count}",
      ),
    ]
    with tf.control_dependencies(checks):
      count = tf.identity(count)
    empty = tf.zeros((0,) + tuple(self.model.image_shape), tf.uint8)
    return {
      "images": _if_any_rows(count, lambda: self.model.sample(count, tf.stack([seed, 0])), empty)
    }


class TranslationServer(_Server):
  """Serving module of a translation model: `translate` (serving_default)."""

  def __init__(self, model, vocab_path, max_input_length, beam_size=None, alpha=None):
    super().__init__(model, "translation_server")
    if max_input_length < 2:
      raise ValueError(f"max_input_length={max_input_length} must be >= 2 (one subword and EOS)")
    self.vocab = serving_vocab.asset_vocab(vocab_path)
    if self.vocab.size != model.vocab_size:
      raise ValueError(
        f"vocabulary {vocab_path!r} has {self.vocab.size} tokens, the model {model.vocab_size}"
      )
    self.max_input_length = int(max_input_length)
    self.beam_size = model.beam_size if beam_size is None else int(beam_size)
    self.alpha = model.alpha if alpha is None else float(alpha)
    self.translate = tf.function(self._translate, input_signature=[_STRINGS])

  @classmethod
  def for_problem(cls, model, problem, max_input_length=None, beam_size=None, alpha=None):
    return cls(
      model,
      problem.vocab_path,
      max_input_length or getattr(problem, "max_length", 256),
      beam_size=beam_size,
      alpha=alpha,
    )

  def signatures(self):
    return {"serving_default": self.translate}

  def info(self):
    return {
      "max_input_length": self.max_input_length,
      "beam_size": self.beam_size,
      "alpha": self.alpha,
      "vocab_size": self.vocab.size,
      "signatures": sorted(self.signatures()),
    }

  def _translate(self, sources):
    sources = _checked_text(sources, "serving_default: sources")

    def run():
      inputs, nonempty = self.vocab.tokenize(sources, self.max_input_length)
      ids = self.model.decode(inputs, beam_size=self.beam_size, alpha=self.alpha)
      return tf.where(nonempty, self.vocab.detokenize(ids), "")

    return {"translations": _if_any_rows(tf.size(sources), run, tf.zeros([0], tf.string))}


class LatentTranslationServer(TranslationServer):
  """Adds `encode` (target -> codes) and `translate_with_codes` for latent models."""

  def __init__(self, model, vocab_path, max_input_length, beam_size=None, alpha=None):
    super().__init__(model, vocab_path, max_input_length, beam_size, alpha)
    self.encode = tf.function(self._encode, input_signature=[_STRINGS, _STRINGS])
    self.translate_with_codes = tf.function(
      self._translate_with_codes, input_signature=[_STRINGS, tf.TensorSpec([None, None], tf.int32)]
    )

  def signatures(self):
    return {
      "serving_default": self.translate,
      "encode": self.encode,
      "translate_with_codes": self.translate_with_codes,
    }

  def info(self):
    return dict(
      super().info(),
      num_codes=self.model.num_codes,
      compress_steps=self.model.compress_steps,
      max_codes=self.max_codes,
    )

  def _encode(self, sources, targets):
    sources = _checked_text(sources, "encode: sources")
    targets = _checked_text(targets, "encode: targets")
    checks = [
      tf.debugging.assert_equal(
        tf.size(sources), tf.size(targets), message="encode: sources and targets differ in number"
      )
    ]
    with tf.control_dependencies(checks):
      sources = tf.identity(sources)

    def run():
      model = self.model
      inputs, _ = self.vocab.tokenize(sources, self.max_input_length)
      outputs, _ = self.vocab.tokenize(targets, self.max_input_length)
      memory, memory_mask = model.encode_source(inputs)
      z_e, latent_mask = model.encode_target(outputs, memory, memory_mask)
      return tf.where(latent_mask, model.bottleneck.encode(z_e), -1)

    return {"codes": _if_any_rows(tf.size(sources), run, tf.zeros([0, 0], tf.int32))}

  @property
  def max_codes(self):
    """The most codes translate_with_codes takes in a row: as many as the model
    decodes for the longest source."""
    extra = getattr(self.model, "max_decode_extra", 0)
    return -(-(self.max_input_length + extra) // 2**self.model.compress_steps)

  def _translate_with_codes(self, sources, codes):
    model = self.model
    sources = _checked_text(sources, "translate_with_codes: sources")
    codes = _checked(codes, tf.TensorSpec([None, None], tf.int32), "translate_with_codes: codes")
    is_code = tf.math.cumsum(tf.cast(codes < 0, tf.int32), axis=1) == 0
    checks = [
      tf.debugging.assert_equal(
        tf.size(sources),
        tf.shape(codes)[0],
        message="translate_with_codes: sources and codes differ in number",
      ),
      tf.debugging.assert_less(
        tf.where(is_code, codes, 0),
        model.num_codes,
        message=f"translate_with_codes: codes must be < the number of codes {model.num_codes}",
      ),
      tf.debugging.assert_less_equal(
        tf.reduce_sum(tf.cast(is_code, tf.int32), axis=1),
        self.max_codes,
        message=f"translate_with_codes: a row has more than max_codes {self.max_codes} codes "
        "(the most the model decodes for a source)",
      ),
    ]
    with tf.control_dependencies(checks):
      # Past max_codes columns every entry is after a row's first negative one.
      sources, codes = tf.identity(sources), tf.identity(codes[:, : self.max_codes])
      is_code = is_code[:, : self.max_codes]

    def run():
      inputs, nonempty = self.vocab.tokenize(sources, self.max_input_length)
      memory, memory_mask = model.encode_source(inputs)
      count = tf.reduce_sum(tf.cast(is_code, tf.int32), axis=1)
      texts = self.vocab.detokenize(model.translate_codes(codes, count, memory, memory_mask))
      return tf.where(tf.logical_and(nonempty, tf.reduce_any(is_code, axis=1)), texts, "")

    rows = tf.size(sources)
    return {
      "translations": tf.cond(
        tf.logical_and(rows > 0, tf.shape(codes)[1] > 0), run, lambda: tf.fill([rows], "")
      )
    }


# The serving module class of each model interface (the `interface` a model
# class declares, t2t_vqem.registry.MODEL_INTERFACES); each has a
# `for_problem(model, problem, max_input_length, beam_size, alpha)` constructor.
SERVERS = {
  "translation": TranslationServer,
  "latent_translation": LatentTranslationServer,
  "image": ImageServer,
}


def register_server(interface, server_class):
  """Serves the models that declare `interface` with `server_class` (a plugin's own)."""
  SERVERS[interface] = server_class


def make_server(model, problem, max_input_length=None, beam_size=None, alpha=None):
  """The serving tf.Module of `model` trained on `problem`, chosen by the model's interface."""
  interface = registry.model_interface(model)
  if interface not in SERVERS:
    raise NotImplementedError(
      f"no serving export for model {type(model).__name__}, whose interface is "
      f"{interface!r}; interfaces with one: {', '.join(sorted(SERVERS))} (add one with "
      "t2t_vqem.export.register_server)"
    )
  return SERVERS[interface].for_problem(
    model, problem, max_input_length=max_input_length, beam_size=beam_size, alpha=alpha
  )


@gin.configurable(denylist=["model", "problem", "export_dir", "extra_info"])
def export_model(
  model, problem, export_dir, max_input_length=None, beam_size=None, alpha=None, extra_info=None
):
  """Writes a serving SavedModel of `model` (trained on `problem`) to export_dir.

  Args:
    model: the trained Keras model (weights loaded).
    problem: its problem (for the vocabulary file and max_length).
    export_dir: where the SavedModel goes (replaced if it exists).
    max_input_length: sources (and encode's targets) are cut to this many
      subwords, EOS included (default: the problem's max_length).
    beam_size, alpha: decoding settings baked into serving_default (default:
      the model's).
    extra_info: dict added to assets.extra/export_info.json (e.g. the step).
  Returns:
    the serving module (its tf.functions can be called in process).
  """
  server = make_server(model, problem, max_input_length, beam_size, alpha)
  signatures = {name: fn.get_concrete_function() for name, fn in server.signatures().items()}
  tmp = export_dir.rstrip("/") + ".tmp"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  tf.saved_model.save(server, tmp, signatures=signatures)
  info = dict(
    server.info(),
    model=getattr(model, "registered_name", None) or type(model).__name__,
    problem=getattr(problem, "name", None),
    **(extra_info or {}),
  )
  tf.io.gfile.makedirs(os.path.join(tmp, "assets.extra"))
  with tf.io.gfile.GFile(os.path.join(tmp, "assets.extra", EXPORT_INFO), "w") as f:
    f.write(json.dumps(info, indent=2) + "\n")
  if tf.io.gfile.exists(export_dir):
    tf.io.gfile.rmtree(export_dir)
  tf.io.gfile.rename(tmp, export_dir)
  logging.info(
    "Exported %s with signatures %s to %s", info["model"], ", ".join(sorted(signatures)), export_dir
  )
  return server
