"""WMT14 English -> German through tensorflow-datasets (newstest2014 as test)."""

from t2t_vqem import constants
from t2t_vqem import registry
from t2t_vqem.problems import problem

# Our split name -> the TFDS split: dev is newstest2013, test newstest2014.
TFDS_SPLITS = {constants.TRAIN: "train", constants.DEV: "validation", constants.TEST: "test"}


@registry.register_problem("translate_ende_wmt")
class TranslateEndeWmt(problem.TranslationProblem):
  """WMT14 English -> German (TFDS wmt14_translate/de-en), newstest2014 test."""

  def __init__(
    self,
    data_dir=None,
    vocab_size=32000,
    max_length=256,
    vocab_sample_size=1_000_000,
    tfds_name="wmt14_translate/de-en",
    tfds_data_dir=None,
    download=True,
    vocab_type="sentencepiece",
  ):
    super().__init__(data_dir, vocab_size, max_length, vocab_sample_size, vocab_type)
    self.tfds_name = tfds_name
    self.tfds_data_dir = tfds_data_dir
    self.download = download
    self._full_name = None

  def split_fingerprint(self, split):
    """The TFDS dataset (name/config/version) and split the pairs come from."""
    problem.check_split(split)
    if self._full_name is None:
      import tensorflow_datasets as tfds

      self._full_name = tfds.builder(self.tfds_name, data_dir=self.tfds_data_dir).info.full_name
    return {"tfds": self._full_name, "split": TFDS_SPLITS[split]}

  def text_pairs(self, split):
    import tensorflow_datasets as tfds

    problem.check_split(split)
    ds = tfds.load(
      self.tfds_name,
      split=TFDS_SPLITS[split],
      data_dir=self.tfds_data_dir,
      download=self.download,
      shuffle_files=False,
    )
    # TFDS yields {"de": ..., "en": ...}; we translate en -> de.
    return ds.map(lambda ex: (ex["en"], ex["de"]))
