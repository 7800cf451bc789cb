"""Sequence-level distillation and the teacher -> distill -> student pipeline.

One target per training source (checked against the grammar's own sources),
resuming an interrupted distillation gives the same data, mismatched teacher or
vocabulary is refused, and the tiny pipeline writes every row of its table.
"""

import hashlib
import json
import os

import gin
import numpy as np
import pytest
import sacrebleu
import tensorflow as tf

from t2t_vqem import config
from t2t_vqem import distill as distill_lib
from t2t_vqem import pipeline as pipeline_lib
from t2t_vqem import registry
from t2t_vqem.problems import grammar
from t2t_vqem.problems import vocab as vocab_lib
from t2t_vqem.train import trainer as trainer_lib

NUM_TRAIN = 150
SHARD_SIZE = 64  # 3 shards, the last one partial
PROBLEM = [
  "translate_grammar_ende.num_train = 150",
  "translate_grammar_ende.num_eval = 12",
  "translate_grammar_ende.vocab_size = 300",
]
TEACHER = [
  "Trainer.model = 'transformer'",
  "Trainer.problem = 'translate_grammar_ende'",
  "Trainer.train_steps = 2",
  "Trainer.batch_tokens = 256",
  "Trainer.eval_every = 0",
  "Trainer.eval_bleu_examples = 0",
  "Trainer.log_every = 1",
  "transformer.hidden_size = 16",
  "transformer.num_layers = 1",
  "transformer.num_heads = 2",
  "transformer.filter_size = 32",
  "transformer.dropout = 0.0",
  "transformer.max_decode_extra = 4",
  "make_optimizer.warmup_steps = 2",
]
# The pipeline's teacher is big enough and trains long enough to get some words
# right (BLEU > 0; at width 16 and 150 steps it wrote character soup, BLEU 0).
PIPELINE_TEACHER = [
  "Trainer.train_steps = 300",
  "transformer.hidden_size = 32",
  "transformer.filter_size = 64",
  "Trainer.batch_tokens = 512",
  "make_optimizer.learning_rate = 0.01",
  "make_optimizer.warmup_steps = 10",
]
STUDENT = [
  "Trainer.model = 'latent_transformer_em'",
  "Trainer.problem = 'translate_grammar_ende'",
  "Trainer.train_steps = 2",
  "Trainer.batch_tokens = 256",
  "Trainer.eval_every = 0",
  "Trainer.eval_bleu_examples = 4",
  "Trainer.log_every = 1",
  "latent_transformer_em.hidden_size = 16",
  "latent_transformer_em.num_layers = 1",
  "latent_transformer_em.num_heads = 2",
  "latent_transformer_em.filter_size = 32",
  "latent_transformer_em.dropout = 0.0",
  "soft_em.codebook_size = 16",
  "soft_em.init_from_first_batch = True",
  "latent_transformer_em.compress_steps = 2",
  "soft_em.num_samples = 3",
  "latent_transformer_em.mask_startup_steps = 0",
  "latent_transformer_em.latent_loss_start_step = 0",
  "make_optimizer.warmup_steps = 2",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.getbasetemp() / "data")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data_dir):
  """A tiny trained teacher run: (output_dir, model, vocab, checkpoint record)."""
  run_dir = str(tmp_path_factory.mktemp("teacher"))
  with pipeline_lib.stage_config(TEACHER + PROBLEM):
    trainer = trainer_lib.Trainer(run_dir, data_dir=data_dir)
    trainer.train()
  record = distill_lib.teacher_record(trainer.manager.latest_checkpoint)
  return run_dir, trainer.model, trainer.vocab, record


def teardown_function():
  gin.clear_config()


def grammar_sources():
  """The training sources, read from the grammar itself (not through the problem)."""
  return [
    s for s, _ in grammar.generate_pairs("train", seed=1234, num_train=NUM_TRAIN, num_eval=12)
  ]


def run_distill(teacher, out_dir, **kwargs):
  _, model, vocab, record = teacher
  return distill_lib.distill(
    model,
    vocab,
    grammar_sources(),
    str(out_dir),
    record,
    "translate_grammar_ende",
    beam_size=2,
    batch_size=32,
    shard_size=SHARD_SIZE,
    progress=False,
    **kwargs,
  )


def search_outputs(model, vocab, sources, beam_size, alpha=None):
  """The model's own search on every source, as text: one batch in the given order
  (a row's result does not depend on the others: test_transformer), so none of
  distill's or the pipeline's length sorting, batching or sharding."""
  rows = [ids + [vocab_lib.EOS_ID] for ids in vocab.tokenize(tf.constant(sources)).to_list()]
  inputs = tf.ragged.constant(rows, dtype=tf.int32).to_tensor()  # PAD = 0
  ids = tf.function(lambda x: model.decode(x, beam_size=beam_size, alpha=alpha))(inputs)
  return [text.decode("utf-8") for text in vocab.detokenize(ids).numpy()]


def read_dir(path):
  return {
    name: (path / name).read_text()
    for name in sorted(os.listdir(path))
    if name.startswith("shard-")
  }


def test_one_target_per_training_source_and_info(tmp_path, teacher, data_dir):
  _, _, vocab, record = teacher
  info = run_distill(teacher, tmp_path)
  assert info["complete"] and info["num_shards"] == 3
  assert sorted(read_dir(tmp_path)) == [f"shard-0000{i}-of-00003.tsv" for i in range(3)]
  pairs = distill_lib.read_pairs(str(tmp_path))
  assert [s for s, _ in pairs] == grammar_sources()
  assert all(isinstance(t, str) and "\t" not in t for _, t in pairs)
  # Each target is the teacher's beam-2 output for its own source, decoded here
  # in one batch in the sources' order.
  _, model, _, _ = teacher
  beam = search_outputs(model, vocab, grammar_sources(), beam_size=2)
  assert [t for _, t in pairs] == [" ".join(t.split()) for t in beam]
  # ... which tells sources apart and beam 2 from greedy, so a shifted pairing
  # or the wrong search would fail the comparison above.
  assert len(set(beam)) > NUM_TRAIN // 4
  assert beam != search_outputs(model, vocab, grammar_sources(), beam_size=1)
  with open(vocab.path, "rb") as f:
    sha = hashlib.sha256(f.read()).hexdigest()
  saved = json.loads((tmp_path / "info.json").read_text())
  assert saved["vocab"] == {"path": os.path.abspath(vocab.path), "sha256": sha}
  assert saved["teacher"] == record and record["step"] == 2
  assert saved["num_sources"] == NUM_TRAIN and saved["beam_size"] == 2

  # The problem wrapper serves them as training pairs, and the gold dev split.
  gin.clear_config()
  gin.parse_config("\n".join(PROBLEM))
  problem = registry.build_problem(
    "translate_distilled",
    base_problem="translate_grammar_ende",
    distill_dir=str(tmp_path),
    data_dir=data_dir,
  )
  assert problem.vocab_path == vocab.path
  served = [(s.decode(), t.decode()) for s, t in problem.text_pairs("train").as_numpy_iterator()]
  assert served == pairs
  gold_dev = grammar.generate_pairs("dev", seed=1234, num_train=NUM_TRAIN, num_eval=12)
  assert problem.sources_and_references("dev") == tuple(map(list, zip(*gold_dev)))


def test_pipeline_distills_with_the_length_penalty_of_distill_alpha(tmp_path, teacher, data_dir):
  run_dir, model, vocab, _ = teacher
  pipeline = pipeline_lib.Pipeline(
    str(tmp_path),
    data_dir=data_dir,
    teacher_gin=TEACHER,
    student_gin=STUDENT,
    shared_gin=PROBLEM,
    teacher_dir=run_dir,
    distill_beam_size=2,
    distill_alpha=3.0,
  )
  info = pipeline.distill()
  assert info["complete"] and info["alpha"] == 3.0 and model.alpha == 0.6
  targets = [t for _, t in distill_lib.read_pairs(pipeline.distill_dir)]
  # The teacher's beam 2 with alpha 3.0, decoded here; its own alpha gives other outputs.
  longer = search_outputs(model, vocab, grammar_sources(), beam_size=2, alpha=3.0)
  assert targets == [" ".join(t.split()) for t in longer]
  assert longer != search_outputs(model, vocab, grammar_sources(), beam_size=2)


def test_resume_after_interruption_gives_the_same_data(tmp_path, teacher):
  straight = tmp_path / "straight"
  run_distill(teacher, straight)

  resumed = tmp_path / "resumed"
  info = run_distill(teacher, resumed, max_shards=1)  # "crashes" after the first shard
  assert not info["complete"]
  assert list(read_dir(resumed)) == ["shard-00000-of-00003.tsv"]
  with pytest.raises(distill_lib.DistillIncompleteError, match="2 of 3 shards missing"):
    distill_lib.read_pairs(str(resumed))
  first = (resumed / "shard-00000-of-00003.tsv").stat().st_mtime_ns
  assert run_distill(teacher, resumed)["complete"]
  assert (resumed / "shard-00000-of-00003.tsv").stat().st_mtime_ns == first  # kept
  assert read_dir(resumed) == read_dir(straight)

  # A lost last shard (e.g. a crash before its rename) is decoded again.
  (resumed / "shard-00002-of-00003.tsv").unlink()
  run_distill(teacher, resumed)
  assert read_dir(resumed) == read_dir(straight)


def test_other_teacher_or_vocab_is_refused(tmp_path, teacher, data_dir):
  run_distill(teacher, tmp_path, max_shards=1)
  run_dir, model, vocab, record = teacher
  other = dict(record, step=record["step"] + 1)
  with pytest.raises(distill_lib.DistillMismatchError, match="made by teacher checkpoint"):
    distill_lib.distill(
      model,
      vocab,
      grammar_sources(),
      str(tmp_path),
      other,
      "translate_grammar_ende",
      beam_size=2,
      shard_size=SHARD_SIZE,
      progress=False,
    )
  run_distill(teacher, tmp_path)
  # A student whose problem has another vocabulary (another vocab_size) is refused.
  gin.clear_config()
  gin.parse_config("\n".join(PROBLEM[:2] + ["translate_grammar_ende.vocab_size = 200"]))
  problem = registry.build_problem(
    "translate_distilled",
    base_problem="translate_grammar_ende",
    distill_dir=str(tmp_path),
    data_dir=data_dir,
  )
  with pytest.raises(distill_lib.DistillMismatchError, match="made with vocabulary"):
    problem.text_pairs("train")


def test_pipeline_end_to_end_and_resume(tmp_path, data_dir):
  out = tmp_path / "run"
  teacher_gin = TEACHER + PIPELINE_TEACHER
  pipeline = pipeline_lib.Pipeline(
    str(out),
    data_dir=data_dir,
    teacher_gin=teacher_gin,
    student_gin=STUDENT,
    shared_gin=PROBLEM,
    distill_shard_size=100,
    bleu_sentences=6,
    latency_sentences=2,
    evaluate_dev=True,
  )
  # Interrupted in the distillation stage: the teacher is kept, distillation resumes.
  pipeline.train_teacher()
  assert not pipeline.distill(max_shards=1)["complete"]
  results = pipeline.run()

  saved = json.loads((out / "results.json").read_text())
  assert saved == json.loads(json.dumps(results))
  names = [row["model"] for row in saved["rows"]]
  assert names == [
    "Transformer (greedy)",
    "Transformer (beam 4)",
    "latent_transformer_em + distillation",
  ]
  for row in saved["rows"]:
    assert 0.0 <= row["bleu"] <= 100.0 and row["latency_ms"] > 0
    assert row["bleu_sentences"] == 6 and row["latency_sentences"] == 2
  student = saved["rows"][2]
  assert (student["n_c"], student["n_s"]) == (2, 3)
  # Each row's BLEU is sacrebleu's corpus BLEU of its decoded outputs against the
  # gold references (the first 6 test pairs, read from the grammar itself).
  gold_test = grammar.generate_pairs("test", seed=1234, num_train=NUM_TRAIN, num_eval=12)[:6]
  references = [t for _, t in gold_test]
  outputs = {}
  for name, row in zip(["teacher_greedy", "teacher_beam4", "student"], saved["rows"]):
    outputs[name] = (out / "eval" / f"{name}.hyp.txt").read_text(encoding="utf-8").split("\n")
    assert outputs[name][-1] == "" and len(outputs[name]) == 7
    outputs[name] = outputs[name][:-1]
    bleu = sacrebleu.corpus_bleu(outputs[name], [references])
    assert row["bleu"] == pytest.approx(bleu.score, rel=1e-9, abs=1e-12)
    if name != "student":  # some words right, so other outputs or references would differ
      assert bleu.score > 0.0
  # ... and the teacher rows' outputs are its greedy and beam-4 translations.
  problem, teacher_model, _ = trainer_lib.load_run(str(out / "teacher"), data_dir=data_dir)
  for name, beam_size in (("teacher_greedy", 1), ("teacher_beam4", 4)):
    assert outputs[name] == search_outputs(
      teacher_model, problem.vocab, [s for s, _ in gold_test], beam_size=beam_size
    )
  assert saved["rows"][0]["speedup_vs_greedy"] == pytest.approx(1.0)
  # The timed sentences by the length of their reference, and the batch-64 throughput.
  lengths = [len(problem.vocab.tokenize(tf.constant([t])).to_list()[0]) for t in references[:2]]
  for row in saved["rows"]:
    for band, (lo, hi) in zip(("1-20", "21-50"), ((1, 20), (21, 50))):
      assert row["by_length"][band]["sentences"] == sum(lo <= n <= hi for n in lengths)
    assert (row["throughput_batch_size"], row["throughput_sentences"]) == (64, 6)
    assert row["sentences_per_second"] > 0
  assert student["speedup_vs_beam"] == pytest.approx(
    saved["rows"][1]["latency_ms"] / student["latency_ms"]
  )
  assert len(distill_lib.read_pairs(str(out / "distill"))) == NUM_TRAIN
  assert (
    json.loads((out / "student" / "run_info.json").read_text())["problem"] == "translate_distilled"
  )
  table = (out / "results.md").read_text()
  assert "| Model | n_c | n_s | BLEU |" in table
  assert all(f"| {name} |" in table for name in names)
  # Rerunning a finished pipeline does nothing but print the table.
  assert (
    pipeline_lib.Pipeline(
      str(out), data_dir=data_dir, teacher_gin=teacher_gin, student_gin=STUDENT, shared_gin=PROBLEM
    ).run()
    == saved
  )
  # A cached row made from another checkpoint than its run's (a run continued since) is
  # evaluated again from the run's own, and every row is timed again.
  student_json = out / "eval" / "student.json"
  row = json.loads(student_json.read_text())
  row["checkpoint"], row["bleu"] = row["checkpoint"] + "-before", -1.0
  student_json.write_text(json.dumps(row))
  timed = (out / "eval" / "latency.json").stat().st_mtime_ns
  (out / "results.json").unlink()
  again = pipeline_lib.Pipeline(
    str(out), data_dir=data_dir, teacher_gin=teacher_gin, student_gin=STUDENT, shared_gin=PROBLEM
  ).run()
  assert again["rows"][2]["checkpoint"] == saved["rows"][2]["checkpoint"]
  assert again["rows"][2]["bleu"] >= 0.0  # decoded again (the planted -1 is gone)
  assert (out / "eval" / "latency.json").stat().st_mtime_ns != timed


def test_pipeline_config_is_recognised_and_restored():
  gin.clear_config()
  gin.parse_config("Trainer.train_steps = 7")
  assert not pipeline_lib.is_configured()
  gin.parse_config("Pipeline.student_gin = ['a.gin']")
  assert pipeline_lib.is_configured()
  with pipeline_lib.stage_config(["Trainer.train_steps = 3"]):
    assert gin.query_parameter("Trainer.train_steps") == 3
    assert not pipeline_lib.is_configured()
  assert gin.query_parameter("Trainer.train_steps") == 7
  assert pipeline_lib.is_configured()


@pytest.mark.parametrize("name", ["em_distill.gin", "em_distill_quickstart.gin", "vq_distill.gin"])
def test_shipped_pipeline_configs_name_valid_stages(name):
  gin.clear_config()
  config.parse_gin([name], [], finalize=False)
  assert pipeline_lib.is_configured()
  stages = {}
  for stage in ("teacher", "student"):
    items = gin.query_parameter(f"Pipeline.{stage}_gin")
    with pipeline_lib.stage_config(
      list(items)
      + list(gin.query_parameter("Pipeline.shared_gin") if _bound("Pipeline.shared_gin") else [])
    ):
      stages[stage] = (gin.query_parameter("Trainer.model"), gin.query_parameter("Trainer.problem"))
      if name == "em_distill.gin":  # the paper's WMT14 setup (§5.1)
        expected = (
          {"transformer.hidden_size": 512, "transformer.num_layers": 6}
          if stage == "teacher"
          else {
            "latent_transformer_em.hidden_size": 512,
            "soft_em.codebook_size": 2**12,
            "latent_transformer_em.compress_steps": 3,
            "soft_em.num_samples": 10,
            "soft_em.decay": 0.999,
            "soft_em.beta": 0.25,
          }
        )
        assert {k: gin.query_parameter(k) for k in expected} == expected
  assert stages["teacher"][0] == "transformer"
  assert stages["student"][0] in ("latent_transformer_em", "latent_transformer_vq")
  assert stages["teacher"][1] == stages["student"][1]
  assert gin.query_parameter("Pipeline.distill_beam_size") == 4


def _bound(name):
  try:
    gin.query_parameter(name)
  except ValueError:
    return False
  return True


def _weights(layer):
  return [w.numpy() for w in layer.weights]


def test_warm_started_student_starts_with_the_teachers_embedding_and_source_encoder(
  tmp_path, teacher, data_dir
):
  """Trainer.warm_start_from: at step 0 the student's embedding and source encoder are the
  teacher's trained weights; its other parts are its own; a resumed run is not reset."""
  teacher_dir, teacher_model, _, _ = teacher
  student = STUDENT + ["Trainer.train_steps = 0", f"Trainer.warm_start_from = {teacher_dir!r}"]
  with pipeline_lib.stage_config(student + PROBLEM):
    trainer = trainer_lib.Trainer(str(tmp_path / "student"), data_dir=data_dir)
    fresh_decoder = _weights(trainer.model.decoder)
    trainer.train()
  model = trainer.model
  for mine, theirs in (
    (model.embedding, teacher_model.embedding),
    (model.source_encoder, teacher_model.encoder),
  ):
    got, want = _weights(mine), _weights(theirs)
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
      np.testing.assert_array_equal(g, w)
  for g, fresh in zip(_weights(model.decoder), fresh_decoder):
    np.testing.assert_array_equal(g, fresh)  # not a shared part: untouched
  assert not np.array_equal(_weights(model.decoder)[0], _weights(teacher_model.decoder)[0])
  # A warm-started run trained to its end writes its own whole operative config (loading
  # the teacher does not erase Gin's record of it) and loads again as itself.
  with pipeline_lib.stage_config(student + PROBLEM + ["Trainer.train_steps = 2"]):
    trainer_lib.Trainer(str(tmp_path / "trained"), data_dir=data_dir).train()
  operative = (tmp_path / "trained" / "operative_config.gin").read_text()
  operative = " ".join(operative.replace("\\\n", " ").split())  # Gin wraps long lines
  assert f"Trainer.warm_start_from = {teacher_dir!r}" in operative
  assert "latent_transformer_em.compress_steps = 2" in operative
  trainer_lib.load_run(str(tmp_path / "trained"), data_dir=data_dir)

  # Trained, checkpointed, then resumed: its own checkpoint wins over the teacher.
  with pipeline_lib.stage_config(student + PROBLEM + ["Trainer.train_steps = 2"]):
    trainer = trainer_lib.Trainer(str(tmp_path / "student"), data_dir=data_dir)
    trainer.train()
    trained = _weights(trainer.model.source_encoder)
  with pipeline_lib.stage_config(student + PROBLEM + ["Trainer.train_steps = 2"]):
    resumed = trainer_lib.Trainer(str(tmp_path / "student"), data_dir=data_dir)
    resumed.train()
  for g, w in zip(_weights(resumed.model.source_encoder), trained):
    np.testing.assert_array_equal(g, w)
  _, loaded, _ = trainer_lib.load_run(str(tmp_path / "student"), data_dir=data_dir)
  for g, w in zip(_weights(loaded.source_encoder), trained):
    np.testing.assert_array_equal(g, w)
  assert any(not np.array_equal(g, w) for g, w in zip(trained, _weights(teacher_model.encoder)))


def test_warm_start_of_parts_that_do_not_match_is_refused(teacher):
  from t2t_vqem.train import warm_start  # noqa: PLC0415

  _, teacher_model, _, _ = teacher
  with pytest.raises(ValueError, match="has no layer 'nope'"):
    warm_start.copy_parts(teacher_model, teacher_model, [("nope", "encoder")])
  with pytest.raises(ValueError, match="weights against"):
    warm_start.copy_parts(teacher_model, teacher_model, [("encoder", "decoder")])
  with pytest.raises(ValueError, match="give a pair"):
    warm_start.check_parts(["encoder"])


def test_pipeline_warm_starts_its_student_from_its_teacher_only_when_asked(tmp_path, monkeypatch):
  monkeypatch.setattr(distill_lib, "read_info", lambda d: {"problem": "translate_grammar_ende"})
  binding = f"Trainer.warm_start_from = {str(tmp_path / 'teacher')!r}"
  for asked in (False, True):
    pipeline = pipeline_lib.Pipeline(
      str(tmp_path), teacher_gin=TEACHER, student_gin=STUDENT, student_warm_start=asked
    )
    assert (binding in pipeline._student_items()) == asked


def test_quickstart_students_warm_start_parts_match_its_teachers():
  """em_distill_quickstart.gin warm-starts its student from its teacher: every part named
  exists in both models with the same weight shapes (else the quickstart fails at step 0)."""
  from t2t_vqem.train import warm_start  # noqa: PLC0415

  gin.clear_config()
  config.parse_gin(["em_distill_quickstart.gin"], [], finalize=False)
  assert gin.query_parameter("Pipeline.student_warm_start") is True
  stages = {s: list(gin.query_parameter(f"Pipeline.{s}_gin")) for s in ("teacher", "student")}
  features = {"inputs": tf.constant([[5, 6, 7, 1]]), "targets": tf.constant([[5, 6, 7, 8, 1]])}
  models = {}
  for stage, items in stages.items():
    with pipeline_lib.stage_config(items):
      models[stage] = registry.build_model(gin.query_parameter("Trainer.model"), vocab_size=64)
      models[stage](features, training=False)
      if stage == "student":
        parts = gin.query_parameter("Trainer.warm_start_parts")
  assert len(parts) == 3
  copied = warm_start.copy_parts(models["student"], models["teacher"], parts)
  assert copied > 0
  for mine, theirs in parts:
    for d, s in zip(
      getattr(models["student"], mine).weights, getattr(models["teacher"], theirs).weights
    ):
      np.testing.assert_array_equal(d.numpy(), s.numpy())
  gin.clear_config()
