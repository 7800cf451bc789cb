"""Registries of problems and models (Tensor2Tensor style).

A problem or model is registered under a name with a decorator:

    @registry.register_problem            # name: snake_case of the class
    class TranslateFooBar(TranslationProblem): ...

    @registry.register_model("my_model")  # explicit name
    class MyModel(keras.Model): ...

Registering a class also makes it a Gin configurable under the same name, so
its constructor arguments can be set in a Gin file (`transformer.hidden_size =
256`). Gin is applied to a generated factory, never to the Keras class itself
(decorating a Keras Layer with Gin breaks its construction).

A model class declares what it can do in its class attribute `interface`
(one of MODEL_INTERFACES); evaluation and export ask `model_interface(model)`
instead of probing for methods.

User modules that register their own problems and models are imported with
`import_modules` (the trainer's `--import=module` flag).
"""

import difflib
import importlib
import inspect
import re
import sys

import gin

_PROBLEMS = {}
_MODELS = {}
_BOTTLENECKS = {}
_FACTORIES = {}


# The model interfaces the library knows: what a model class may declare in
# `interface`, and what that promises (a plugin may add its own, with a server:
# t2t_vqem.export.register_server).
MODEL_INTERFACES = {
  "translation": "decode(inputs, beam_size, alpha) -> ids (served by export.TranslationServer)",
  "latent_translation": "translation's, and reconstruct(inputs, targets): the teacher-forced "
  "output, latents from the target encoder (served by "
  "export.LatentTranslationServer)",
  "image": "reconstruct(images) and sample(count, seed) (served by export.ImageServer)",
}


class RegistryError(ValueError):
  """A lookup or registration that cannot be satisfied; the message is one line."""


def default_name(obj):
  """CamelCase class name -> snake_case registry name."""
  name = obj.__name__
  name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
  return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def constructor_parameters(cls):
  """Keyword parameters of cls.__init__, following **kwargs into the base classes.

  A subclass that only changes defaults (`def __init__(self, vocab_size,
  num_samples=10, **kwargs)`) thus still exposes every parameter of its base
  to Gin. The walk stops at the first constructor without **kwargs and at
  Keras' own classes. Names in the class's `fixed_parameters` (a preset's
  fixed choices) are left out.
  """
  params, seen = [], set(getattr(cls, "fixed_parameters", ()))
  for klass in cls.__mro__:
    if "__init__" not in vars(klass) or klass.__module__.startswith(("keras", "builtins")):
      continue
    more = False
    for p in list(inspect.signature(klass.__init__).parameters.values())[1:]:
      if p.kind == p.VAR_KEYWORD:
        more = True
      elif p.kind != p.VAR_POSITIONAL and p.name not in seen:
        seen.add(p.name)
        # A base class's parameters can only be passed by keyword.
        params.append(p if klass is cls else p.replace(kind=p.KEYWORD_ONLY))
    if not more:
      break
  return params


def _gin_factory(cls, name, kind):
  """A Gin configurable `name` that builds `cls` with the bound arguments.

  Its signature is the class constructor's (see `constructor_parameters`), so
  Gin rejects bindings of parameters the constructor does not have.
  """

  def factory(*args, **kwargs):
    return cls(*args, **kwargs)

  factory.__signature__ = inspect.Signature(constructor_parameters(cls))
  factory.__name__ = name
  factory.__doc__ = cls.__doc__
  return gin.external_configurable(factory, name=name, module=kind)


def _register(table, kind, name=None):
  def decorator(cls):
    key = name or default_name(cls)
    if key in table:
      raise RegistryError(
        f"{kind} name {key!r} is already registered to "
        f"{table[key].__module__}.{table[key].__qualname__}; choose another name"
      )
    table[key] = cls
    _FACTORIES[(kind, key)] = _gin_factory(cls, key, kind)
    cls.registered_name = key
    return cls

  return decorator


def _decorator(table, kind, name_or_cls):
  if name_or_cls is None or isinstance(name_or_cls, str):
    return _register(table, kind, name_or_cls)
  return _register(table, kind)(name_or_cls)


def register_problem(name_or_cls=None):
  """Registers a Problem class; usable bare or with an explicit name."""
  return _decorator(_PROBLEMS, "problem", name_or_cls)


def register_model(name_or_cls=None):
  """Registers a keras.Model class; usable bare or with an explicit name."""
  return _decorator(_MODELS, "model", name_or_cls)


def register_bottleneck(name_or_cls=None):
  """Registers a bottleneck layer class (`t2t_vqem.bottlenecks.base.Bottleneck`)."""
  return _decorator(_BOTTLENECKS, "bottleneck", name_or_cls)


def _lookup(table, kind, name):
  if name in table:
    return table[name]
  known = sorted(table)
  close = difflib.get_close_matches(str(name), known, n=1)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  raise RegistryError(
    f"unknown {kind} {name!r}; registered {kind}s: {', '.join(known) or '(none)'}.{hint}"
  )


def problem(name):
  """The registered Problem class called `name`."""
  return _lookup(_PROBLEMS, "problem", name)


def model(name):
  """The registered model class called `name`."""
  return _lookup(_MODELS, "model", name)


def bottleneck(name):
  """The registered bottleneck class called `name`."""
  return _lookup(_BOTTLENECKS, "bottleneck", name)


def build_bottleneck(registered_name, **kwargs):
  """An instance of bottleneck `registered_name` with its Gin bindings applied
  (`registered_name.arg = ...`); kwargs (the layer's own `name` among them) win."""
  bottleneck(registered_name)
  return _FACTORIES[("bottleneck", registered_name)](**kwargs)


def build_problem(name, **kwargs):
  """An instance of problem `name`, with its Gin bindings applied."""
  problem(name)
  return _FACTORIES[("problem", name)](**kwargs)


def build_model(name, **kwargs):
  """An instance of model `name`, with its Gin bindings applied."""
  model(name)
  return _FACTORIES[("model", name)](**kwargs)


def model_interface(model):
  """The interface (a key of MODEL_INTERFACES) that a model's class declares in
  `interface`; "translation" for a class that declares none."""
  return getattr(type(model), "interface", None) or "translation"


def list_problems():
  return sorted(_PROBLEMS)


def list_models():
  return sorted(_MODELS)


def list_bottlenecks():
  return sorted(_BOTTLENECKS)


def _argument_line(cls):
  """'arg=default, ...' of a bottleneck's constructor (what Gin can bind)."""
  args = []
  for p in constructor_parameters(cls):
    if p.name in ("embedding_dim", "name", "dtype", "trainable"):
      continue
    args.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
  return ", ".join(args)


def help_string():
  """Every registered problem, model and bottleneck, one per line with its summary;
  a bottleneck also with its arguments."""
  lines = []
  for kind, table in (("Problems", _PROBLEMS), ("Models", _MODELS), ("Bottlenecks", _BOTTLENECKS)):
    lines.append(f"{kind}:")
    for key in sorted(table):
      doc = (inspect.getdoc(table[key]) or "").split("\n")[0]
      lines.append(f"  {key:32s} {doc}")
      if table is _BOTTLENECKS:
        lines.append(f"  {'':32s}   ({_argument_line(table[key])})")
  return "\n".join(lines)


def import_modules(module_names):
  """Imports user modules that register problems and models (`--import`).

  A directory path or a `.py` file path is accepted too: its folder is put on
  sys.path and the module imported by name.
  """
  for name in module_names:
    module = name
    if name.endswith(".py") or "/" in name:
      path = name[:-3] if name.endswith(".py") else name.rstrip("/")
      folder, _, module = path.rpartition("/")
      sys.path.insert(0, folder or ".")
    try:
      importlib.import_module(module)
    except Exception as e:  # any failure is reported on one line, by name
      raise RegistryError(
        f"cannot import user module {name!r} given to --import: {type(e).__name__}: {e}"
      ) from None
