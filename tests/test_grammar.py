"""The embedded toy grammar: corpus properties and hand-checked translations."""

import collections
import random
import re

import pytest

from t2t_vqem.problems import grammar
from t2t_vqem.problems.grammar import NP
from t2t_vqem.problems.grammar import PP
from t2t_vqem.problems.grammar import Clause
from t2t_vqem.problems.grammar import Relative
from t2t_vqem.problems.grammar import Sentence


def _tokens(text):
  """Words and punctuation marks, split independently of the module."""
  return re.findall(r"\w+|[^\w\s]", text)


@pytest.fixture(scope="module")
def corpus():
  return {split: grammar.generate_pairs(split) for split in grammar.SPLITS}


# --- API and corpus -------------------------------------------------------


def test_unknown_split_is_rejected():
  with pytest.raises(ValueError, match="'validation'.*train, dev, test"):
    grammar.generate_pairs("validation")


def test_deterministic_and_stable_across_train_sizes():
  small = {
    s: grammar.generate_pairs(s, seed=7, num_train=2000, num_eval=100) for s in grammar.SPLITS
  }
  large = {
    s: grammar.generate_pairs(s, seed=7, num_train=3000, num_eval=100) for s in grammar.SPLITS
  }
  assert small["dev"] == large["dev"] and small["test"] == large["test"]
  assert small["train"] == large["train"][:2000]
  other_seed = grammar.generate_pairs("dev", seed=8, num_train=2000, num_eval=100)
  assert other_seed != small["dev"]


def test_leaves_global_random_state_alone():
  state = random.getstate()
  grammar.generate_pairs("test", seed=11, num_train=500, num_eval=50)
  assert random.getstate() == state


def test_sizes_distinctness_and_disjoint_splits(corpus):
  assert [len(corpus[s]) for s in grammar.SPLITS] == [60000, 1000, 1000]
  sources = {s: {en for en, _ in corpus[s]} for s in grammar.SPLITS}
  assert len(sources["train"]) == 60000
  assert len(sources["dev"]) == len(sources["test"]) == 1000
  assert not sources["train"] & sources["dev"]
  assert not sources["train"] & sources["test"]
  assert not sources["dev"] & sources["test"]


def test_sentence_lengths(corpus):
  lengths = [len(_tokens(text)) for pair in corpus["train"] for text in pair]
  assert min(lengths) >= 4 and max(lengths) <= 40
  assert max(lengths) >= 30  # a tail of long sentences
  mid = sum(6 <= n <= 25 for n in lengths) / len(lengths)
  assert mid >= 0.8


def test_vocabulary_sizes(corpus):
  pairs = [pair for split in corpus.values() for pair in split]
  for side in (0, 1):
    words = {w.lower() for pair in pairs for w in _tokens(pair[side]) if w[0].isalnum()}
    assert 400 <= len(words) <= 900, (side, len(words))


def test_orthography(corpus):
  for en, de in corpus["dev"] + corpus["test"]:
    for text in (en, de):
      assert text[0].isupper(), text
      assert text[-1] in ".?" and text[-2] not in " ,", text
      assert " ," not in text and ",," not in text, text
    assert en[-1] == de[-1]
    assert de.count(",") >= en.count(",")


def test_questions_and_reorderings_occur(corpus):
  de = [de for _, de in corpus["train"]]
  assert sum(s.endswith("?") for s in de) > 2000
  assert sum(", weil " in s for s in de) > 500
  assert sum(s.startswith("Gestern ") for s in de) > 200


# --- Hand-written translations --------------------------------------------


def _check(sentence, english, german):
  assert grammar.translate(sentence) == (english, german)


def test_verb_second_after_fronted_adverb():
  clause = Clause(NP("dog"), "see", "past", obj=NP("cat"), adverb="yesterday")
  _check(
    Sentence(clause, front="adverb"),
    "Yesterday the dog saw the cat.",
    "Gestern sah der Hund die Katze.",
  )
  _check(Sentence(clause), "The dog saw the cat yesterday.", "Der Hund sah gestern die Katze.")


def test_verb_second_after_fronted_place_with_contraction():
  clause = Clause(NP("cat", number="pl"), "sleep", pp=PP("in", NP("garden")))
  _check(
    Sentence(clause, front="pp"), "In the garden the cats sleep.", "Im Garten schlafen die Katzen."
  )


def test_verb_final_subordinate_clause():
  sentence = Sentence(
    Clause(NP("woman"), "sleep"), conj="because", adjunct=Clause(NP("man"), "read", obj=NP("book"))
  )
  _check(
    sentence,
    "The woman sleeps because the man reads the book.",
    "Die Frau schläft, weil der Mann das Buch liest.",
  )


def test_fronted_subordinate_clause():
  sentence = Sentence(
    Clause(NP("man"), "laugh"), front="adjunct", conj="because", adjunct=Clause(NP("dog"), "sleep")
  )
  _check(
    sentence, "Because the dog sleeps, the man laughs.", "Weil der Hund schläft, lacht der Mann."
  )


def test_when_is_als_with_simple_past():
  sentence = Sentence(
    Clause(NP(pronoun="we"), "laugh", "past"),
    conj="when",
    adjunct=Clause(NP("girl"), "arrive", "past"),
  )
  _check(sentence, "We laughed when the girl arrived.", "Wir lachten, als das Mädchen ankam.")
  sentence = Sentence(
    Clause(NP(pronoun="we"), "laugh"), conj="when", adjunct=Clause(NP("girl"), "arrive", "perfect")
  )
  _check(
    sentence, "We laugh when the girl has arrived.", "Wir lachen, wenn das Mädchen angekommen ist."
  )


def test_perfect_participle_at_clause_end():
  _check(
    Sentence(Clause(NP("woman"), "buy", "perfect", obj=NP("car", det="a"))),
    "The woman has bought a car.",
    "Die Frau hat ein Auto gekauft.",
  )
  _check(
    Sentence(Clause(NP(pronoun="you"), "run", "perfect")), "You have run.", "Du bist gelaufen."
  )


def test_separable_prefix():
  _check(
    Sentence(Clause(NP(pronoun="he"), "call", obj=NP("man"))),
    "He calls the man.",
    "Er ruft den Mann an.",
  )
  sentence = Sentence(
    Clause(NP(pronoun="I"), "laugh"),
    conj="because",
    adjunct=Clause(NP(pronoun="he"), "call", obj=NP("man")),
  )
  _check(sentence, "I laugh because he calls the man.", "Ich lache, weil er den Mann anruft.")


def test_infinitive_at_clause_end():
  _check(
    Sentence(Clause(NP(pronoun="you all"), "invite", "future", obj=NP("teacher", number="pl"))),
    "You all will invite the teachers.",
    "Ihr werdet die Lehrer einladen.",
  )
  _check(
    Sentence(Clause(NP(pronoun="she"), "visit", "want", obj=NP("castle"))),
    "She wants to visit the castle.",
    "Sie will das Schloss besuchen.",
  )


def test_questions_put_the_verb_first():
  _check(
    Sentence(Clause(NP("dog"), "see", "past", obj=NP("cat")), question=True),
    "Did the dog see the cat?",
    "Sah der Hund die Katze?",
  )
  _check(
    Sentence(
      Clause(NP("child", det="my"), "eat", "perfect", obj=NP("egg", det="a"), adverb="already"),
      question=True,
    ),
    "Has my child already eaten an egg?",
    "Hat mein Kind schon ein Ei gegessen?",
  )


def test_dass_clause():
  clause = Clause(
    NP(pronoun="they"), "say", "perfect", complement=Clause(NP("king"), "come", "perfect")
  )
  _check(
    Sentence(clause),
    "They have said that the king has come.",
    "Sie haben gesagt, dass der König gekommen ist.",
  )


def test_adverb_positions():
  _check(
    Sentence(
      Clause(NP(pronoun="he"), "visit", "perfect", obj=NP("aunt", det="his"), adverb="often")
    ),
    "He has often visited his aunt.",
    "Er hat oft seine Tante besucht.",
  )
  _check(
    Sentence(
      Clause(
        NP("cook"),
        "bring",
        "future",
        indirect=NP("guest", number="pl"),
        obj=NP("cake", det="a"),
        adverb="tomorrow",
      )
    ),
    "The cook will bring the guests a cake tomorrow.",
    "Der Koch wird morgen den Gästen einen Kuchen bringen.",
  )


def test_person_endings():
  expected = {
    "I": "Ich lese",
    "you": "Du liest",
    "he": "Er liest",
    "we": "Wir lesen",
    "you all": "Ihr lest",
    "they": "Sie lesen",
  }
  for pronoun, german in expected.items():
    _, de = grammar.translate(Sentence(Clause(NP(pronoun=pronoun), "read", obj=NP("letter"))))
    assert de == german + " den Brief.", de
  past = {"I": "arbeitete", "you": "arbeitetest", "we": "arbeiteten", "you all": "arbeitetet"}
  for pronoun, german in past.items():
    _, de = grammar.translate(Sentence(Clause(NP(pronoun=pronoun), "work", "past")))
    assert de.split()[1] == german + ".", de


def test_case_agreement():
  # Accusative masculine, weak noun, dative verb with feminine possessive.
  _check(
    Sentence(Clause(NP(pronoun="I"), "see", obj=NP("student"))),
    "I see the student.",
    "Ich sehe den Studenten.",
  )
  _check(
    Sentence(Clause(NP("boy", det="a"), "help", obj=NP("woman", det="my", adjective="old"))),
    "A boy helps my old woman.",
    "Ein Junge hilft meiner alten Frau.",
  )
  # Dative plural -n and mixed adjective ending on the accusative masculine.
  _check(
    Sentence(
      Clause(
        NP("father"),
        "give",
        indirect=NP("child", number="pl"),
        obj=NP("apple", det="a", adjective="red"),
      )
    ),
    "The father gives the children a red apple.",
    "Der Vater gibt den Kindern einen roten Apfel.",
  )
  # Strong adjective ending without determiner, dative preposition.
  _check(
    Sentence(
      Clause(
        NP(pronoun="she"), "play", pp=PP("with", NP("dog", number="pl", det="a", adjective="small"))
      )
    ),
    "She plays with small dogs.",
    "Sie spielt mit kleinen Hunden.",
  )
  # Accusative preposition, neuter nominative after ein, "an".
  _check(
    Sentence(
      Clause(NP("horse", det="a", adjective="young"), "run", pp=PP("for", NP("man", det="this")))
    ),
    "A young horse runs for this man.",
    "Ein junges Pferd läuft für diesen Mann.",
  )
  _check(
    Sentence(
      Clause(NP("man", det="a", adjective="old"), "wait", pp=PP("on", NP("sofa", det="our")))
    ),
    "An old man waits on our sofa.",
    "Ein alter Mann wartet auf unserem Sofa.",
  )


def test_relative_clauses():
  helped = Relative("help", gap="object", other=NP("child"))
  _check(
    Sentence(Clause(NP("man", relative=helped), "sleep")),
    "The man who the child helps sleeps.",
    "Der Mann, dem das Kind hilft, schläft.",
  )
  _check(
    Sentence(Clause(NP("man", number="pl", relative=helped), "sleep")),
    "The men who the child helps sleep.",
    "Die Männer, denen das Kind hilft, schlafen.",
  )
  bought = Relative("buy", "past", gap="object", other=NP(pronoun="he"))
  _check(
    Sentence(Clause(NP(pronoun="she"), "read", obj=NP("book", relative=bought))),
    "She reads the book that he bought.",
    "Sie liest das Buch, das er kaufte.",
  )
  sees = Relative("see", gap="subject", other=NP("dog"))
  _check(
    Sentence(Clause(NP(pronoun="I"), "know", obj=NP("woman", det="a", relative=sees))),
    "I know a woman who sees the dog.",
    "Ich kenne eine Frau, die den Hund sieht.",
  )


def test_sampler_reaches_the_whole_lexicon(corpus):
  """The sampler reaches every verb, noun and tense of the lexicon."""
  text = " ".join(de for _, de in corpus["train"])
  words = collections.Counter(_tokens(text))
  for noun in grammar.NOUNS.values():
    assert words[noun.de] or words[noun.de_pl], noun
  for verb in grammar.VERBS.values():
    assert words[verb.de_part], verb
  for form in ("wird", "kann", "muss", "will", "hat", "ist"):
    assert words[form], form
