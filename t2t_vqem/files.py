"""Files that appear complete or not at all.

Every file the tools write (run info, results, operative configs, shards,
vocabularies, tables) goes through here: the text is written to a temporary
file beside the target, flushed to disk, then renamed over it. A process killed
at any point leaves the old file or the new one, never part of one; at worst a
`*.tmp-<pid>` file, which nothing reads and the next write of that path removes.
"""

import glob
import hashlib
import json
import os


def _temporary(path):
  return f"{path}.tmp-{os.getpid()}"


def remove_stale_temporaries(path):
  """Removes the temporary files an earlier, killed writer of `path` left."""
  for stale in glob.glob(glob.escape(path) + ".tmp-*"):
    try:
      os.remove(stale)
    except OSError:
      pass


def write_bytes(path, data):
  """Writes `data` (bytes) to `path` atomically (see the module docstring)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  remove_stale_temporaries(path)
  tmp = _temporary(path)
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path, text, newline=None):
  """Writes `text` as UTF-8 to `path` atomically; newline=None writes os.linesep for "\\n",
  "" writes the text as it is (csv's own line ends)."""
  if newline is None:
    text = text.replace("\n", os.linesep)
  write_bytes(path, text.encode("utf-8"))


def write_json(path, value):
  """Writes `value` as indented JSON to `path` atomically."""
  write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def sha256(path):
  """The sha256 (hex) of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()
