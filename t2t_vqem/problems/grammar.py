"""A seeded toy grammar: English -> German-like translation pairs, no download.

Sentences are drawn from a small phrase-structure grammar and realised twice,
in English and in (regular, textbook) German, from the same abstract clause.
The target side differs from the source by real, systematic rules:

Word order
  * Verb second in main clauses. The prefield holds the subject, a fronted
    adverbial ("Yesterday the dog saw the cat." -> "Gestern sah der Hund die
    Katze."), a fronted place phrase or a fronted subordinate clause ("Because
    the dog sleeps, the man laughs." -> "Weil der Hund schläft, lacht der
    Mann."); the finite verb follows it and the subject moves after the verb.
  * Verb first in yes/no questions ("Did the dog see the cat?" -> "Sah der
    Hund die Katze?").
  * Verb final in subordinate clauses (weil, obwohl, während, wenn/als, dass)
    and in relative clauses, after a comma.
  * The right bracket: participles (perfect), infinitives (future with
    "werden", modals können/müssen/wollen) and separable prefixes go to the
    end of the main clause ("The woman has bought a car." -> "Die Frau hat ein
    Auto gekauft."; "He calls the man." -> "Er ruft den Mann an."); in
    subordinate clauses the prefix rejoins the finite verb ("..., weil er den
    Mann anruft").
  * Middle field order: subject, adverb, dative object, accusative object,
    prepositional phrase. English frequency adverbs sit before the verb, time
    adverbs at the end; German puts both after the subject.

Morphology and agreement
  * Determiners (der/dieser/ein/mein/sein/ihr/unser) and adjectives agree with
    the noun in gender (m, f, n), number and case (nominative, accusative,
    dative), with weak, mixed and strong adjective endings.
  * Case comes from the syntax: subject nominative, direct object accusative,
    indirect object and the object of helfen/folgen/antworten dative,
    prepositions govern dative (in, an, auf, mit, von, ...) or accusative
    (für, ohne); in/an/von + dem contract to im/am/vom.
  * Nouns have lexical plurals, dative plurals add -n, weak masculine nouns
    take -(e)n outside the nominative singular ("den Jungen").
  * Verbs inflect for person and number (ich/du/er/wir/ihr/sie) in present
    and simple past, with stem vowel changes (du siehst, er liest), e-insertion
    (er arbeitet), haben/sein as perfect auxiliary, strong and weak pasts.
  * Relative pronouns agree with their antecedent in gender and number and
    take their case from their role in the relative clause ("der Mann, dem
    das Kind hilft").
  * "when" is "als" with a simple past and "wenn" otherwise; "wants to" is
    "will", "will" is "wird".

English verbs whose simple past equals their base form ("read") are never
put in the simple past, so that every English sentence has one translation.

`generate_pairs` draws sentences from one seeded stream, keeps those of 4 to
40 tokens (punctuation counts as a token), drops repeated sources and assigns
each source to train, dev or test by a hash of its text, so the splits are
disjoint and a split's sentences do not depend on the size of another.
"""

import bisect
import collections
import dataclasses
import functools
import hashlib
import itertools
import random

from t2t_vqem import constants

SPLITS = constants.SPLITS

# Tense names: simple tenses, perfect, future and three modal constructions.
TENSES = ("present", "past", "perfect", "future", "can", "must", "want")
PERSONS = ("1s", "2s", "3s", "1p", "2p", "3p")

# ---------------------------------------------------------------------------
# Lexicon: tables of rows keyed by their English (first) field.


def by_english(kind, rows):
  return {row[0]: kind(*row) for row in rows}


# Noun tags: P person, A animal, T thing, L place, S surface (on/under it),
# and for things r readable, e edible, o can be opened.

Noun = collections.namedtuple("Noun", "en en_pl de gender de_pl tags")

NOUNS = by_english(
  Noun,
  [
    ("man", "men", "Mann", "m", "Männer", "P"),
    ("woman", "women", "Frau", "f", "Frauen", "P"),
    ("child", "children", "Kind", "n", "Kinder", "P"),
    ("boy", "boys", "Junge", "m", "Jungen", "P"),
    ("girl", "girls", "Mädchen", "n", "Mädchen", "P"),
    ("teacher", "teachers", "Lehrer", "m", "Lehrer", "P"),
    ("doctor", "doctors", "Arzt", "m", "Ärzte", "P"),
    ("student", "students", "Student", "m", "Studenten", "P"),
    ("friend", "friends", "Freund", "m", "Freunde", "P"),
    ("neighbour", "neighbours", "Nachbar", "m", "Nachbarn", "P"),
    ("king", "kings", "König", "m", "Könige", "P"),
    ("queen", "queens", "Königin", "f", "Königinnen", "P"),
    ("farmer", "farmers", "Bauer", "m", "Bauern", "P"),
    ("baker", "bakers", "Bäcker", "m", "Bäcker", "P"),
    ("cook", "cooks", "Koch", "m", "Köche", "P"),
    ("father", "fathers", "Vater", "m", "Väter", "P"),
    ("mother", "mothers", "Mutter", "f", "Mütter", "P"),
    ("brother", "brothers", "Bruder", "m", "Brüder", "P"),
    ("sister", "sisters", "Schwester", "f", "Schwestern", "P"),
    ("son", "sons", "Sohn", "m", "Söhne", "P"),
    ("daughter", "daughters", "Tochter", "f", "Töchter", "P"),
    ("aunt", "aunts", "Tante", "f", "Tanten", "P"),
    ("guest", "guests", "Gast", "m", "Gäste", "P"),
    ("soldier", "soldiers", "Soldat", "m", "Soldaten", "P"),
    ("waiter", "waiters", "Kellner", "m", "Kellner", "P"),
    ("thief", "thieves", "Dieb", "m", "Diebe", "P"),
    ("prince", "princes", "Prinz", "m", "Prinzen", "P"),
    ("uncle", "uncles", "Onkel", "m", "Onkel", "P"),
    ("pupil", "pupils", "Schüler", "m", "Schüler", "P"),
    ("singer", "singers", "Sänger", "m", "Sänger", "P"),
    ("hunter", "hunters", "Jäger", "m", "Jäger", "P"),
    ("painter", "painters", "Maler", "m", "Maler", "P"),
    ("grandfather", "grandfathers", "Großvater", "m", "Großväter", "P"),
    ("dog", "dogs", "Hund", "m", "Hunde", "A"),
    ("cat", "cats", "Katze", "f", "Katzen", "A"),
    ("horse", "horses", "Pferd", "n", "Pferde", "A"),
    ("cow", "cows", "Kuh", "f", "Kühe", "A"),
    ("bird", "birds", "Vogel", "m", "Vögel", "A"),
    ("mouse", "mice", "Maus", "f", "Mäuse", "A"),
    ("bear", "bears", "Bär", "m", "Bären", "A"),
    ("lion", "lions", "Löwe", "m", "Löwen", "A"),
    ("monkey", "monkeys", "Affe", "m", "Affen", "A"),
    ("pig", "pigs", "Schwein", "n", "Schweine", "A"),
    ("goat", "goats", "Ziege", "f", "Ziegen", "A"),
    ("duck", "ducks", "Ente", "f", "Enten", "A"),
    ("wolf", "wolves", "Wolf", "m", "Wölfe", "A"),
    ("fox", "foxes", "Fuchs", "m", "Füchse", "A"),
    ("chicken", "chickens", "Huhn", "n", "Hühner", "A"),
    ("frog", "frogs", "Frosch", "m", "Frösche", "A"),
    ("donkey", "donkeys", "Esel", "m", "Esel", "A"),
    ("snake", "snakes", "Schlange", "f", "Schlangen", "A"),
    ("elephant", "elephants", "Elefant", "m", "Elefanten", "A"),
    ("rabbit", "rabbits", "Hase", "m", "Hasen", "A"),
    ("book", "books", "Buch", "n", "Bücher", "Tro"),
    ("letter", "letters", "Brief", "m", "Briefe", "Tro"),
    ("newspaper", "newspapers", "Zeitung", "f", "Zeitungen", "Tr"),
    ("map", "maps", "Karte", "f", "Karten", "Tr"),
    ("apple", "apples", "Apfel", "m", "Äpfel", "Te"),
    ("cake", "cakes", "Kuchen", "m", "Kuchen", "Te"),
    ("egg", "eggs", "Ei", "n", "Eier", "Te"),
    ("sausage", "sausages", "Wurst", "f", "Würste", "Te"),
    ("loaf", "loaves", "Brot", "n", "Brote", "Te"),
    ("spoon", "spoons", "Löffel", "m", "Löffel", "T"),
    ("plate", "plates", "Teller", "m", "Teller", "T"),
    ("pen", "pens", "Stift", "m", "Stifte", "T"),
    ("stone", "stones", "Stein", "m", "Steine", "T"),
    ("ball", "balls", "Ball", "m", "Bälle", "T"),
    ("key", "keys", "Schlüssel", "m", "Schlüssel", "T"),
    ("picture", "pictures", "Bild", "n", "Bilder", "T"),
    ("flower", "flowers", "Blume", "f", "Blumen", "T"),
    ("bag", "bags", "Tasche", "f", "Taschen", "To"),
    ("cup", "cups", "Tasse", "f", "Tassen", "T"),
    ("bottle", "bottles", "Flasche", "f", "Flaschen", "To"),
    ("box", "boxes", "Kiste", "f", "Kisten", "To"),
    ("door", "doors", "Tür", "f", "Türen", "To"),
    ("window", "windows", "Fenster", "n", "Fenster", "To"),
    ("hat", "hats", "Hut", "m", "Hüte", "T"),
    ("shoe", "shoes", "Schuh", "m", "Schuhe", "T"),
    ("coat", "coats", "Mantel", "m", "Mäntel", "T"),
    ("dress", "dresses", "Kleid", "n", "Kleider", "T"),
    ("ring", "rings", "Ring", "m", "Ringe", "T"),
    ("shirt", "shirts", "Hemd", "n", "Hemden", "T"),
    ("bicycle", "bicycles", "Fahrrad", "n", "Fahrräder", "T"),
    ("car", "cars", "Auto", "n", "Autos", "T"),
    ("umbrella", "umbrellas", "Schirm", "m", "Schirme", "T"),
    ("glass", "glasses", "Glas", "n", "Gläser", "T"),
    ("knife", "knives", "Messer", "n", "Messer", "T"),
    ("lamp", "lamps", "Lampe", "f", "Lampen", "T"),
    ("clock", "clocks", "Uhr", "f", "Uhren", "T"),
    ("toy", "toys", "Spielzeug", "n", "Spielzeuge", "T"),
    ("boat", "boats", "Boot", "n", "Boote", "T"),
    ("photo", "photos", "Foto", "n", "Fotos", "T"),
    ("gift", "gifts", "Geschenk", "n", "Geschenke", "To"),
    ("table", "tables", "Tisch", "m", "Tische", "TS"),
    ("chair", "chairs", "Stuhl", "m", "Stühle", "TS"),
    ("bed", "beds", "Bett", "n", "Betten", "TS"),
    ("sofa", "sofas", "Sofa", "n", "Sofas", "TS"),
    ("shelf", "shelves", "Regal", "n", "Regale", "TS"),
    ("tree", "trees", "Baum", "m", "Bäume", "S"),
    ("roof", "roofs", "Dach", "n", "Dächer", "S"),
    ("mountain", "mountains", "Berg", "m", "Berge", "LS"),
    ("bridge", "bridges", "Brücke", "f", "Brücken", "LS"),
    ("house", "houses", "Haus", "n", "Häuser", "L"),
    ("garden", "gardens", "Garten", "m", "Gärten", "L"),
    ("school", "schools", "Schule", "f", "Schulen", "L"),
    ("park", "parks", "Park", "m", "Parks", "L"),
    ("kitchen", "kitchens", "Küche", "f", "Küchen", "L"),
    ("station", "stations", "Bahnhof", "m", "Bahnhöfe", "L"),
    ("church", "churches", "Kirche", "f", "Kirchen", "L"),
    ("library", "libraries", "Bibliothek", "f", "Bibliotheken", "L"),
    ("shop", "shops", "Laden", "m", "Läden", "L"),
    ("hotel", "hotels", "Hotel", "n", "Hotels", "L"),
    ("office", "offices", "Büro", "n", "Büros", "L"),
    ("hospital", "hospitals", "Krankenhaus", "n", "Krankenhäuser", "L"),
    ("museum", "museums", "Museum", "n", "Museen", "L"),
    ("village", "villages", "Dorf", "n", "Dörfer", "L"),
    ("town", "towns", "Stadt", "f", "Städte", "L"),
    ("castle", "castles", "Schloss", "n", "Schlösser", "L"),
    ("forest", "forests", "Wald", "m", "Wälder", "L"),
    ("lake", "lakes", "See", "m", "Seen", "L"),
    ("market", "markets", "Markt", "m", "Märkte", "L"),
    ("tower", "towers", "Turm", "m", "Türme", "L"),
    ("cinema", "cinemas", "Kino", "n", "Kinos", "L"),
    ("farm", "farms", "Bauernhof", "m", "Bauernhöfe", "L"),
    ("river", "rivers", "Fluss", "m", "Flüsse", "L"),
    ("restaurant", "restaurants", "Restaurant", "n", "Restaurants", "L"),
    ("theatre", "theatres", "Theater", "n", "Theater", "L"),
    ("zoo", "zoos", "Zoo", "m", "Zoos", "L"),
    ("airport", "airports", "Flughafen", "m", "Flughäfen", "L"),
  ],
)

# Weak masculine nouns: -(e)n (their plural form) outside the nominative singular.
WEAK_NOUNS = frozenset(
  [
    "boy",
    "student",
    "neighbour",
    "farmer",
    "soldier",
    "prince",
    "bear",
    "lion",
    "monkey",
    "elephant",
    "rabbit",
  ]
)

# Verbs. English base, past, participle; German infinitive ("|" marks a
# separable prefix), present stem after a vowel change for du/er ("" if none),
# simple past stem ("" for weak verbs: stem + -te), participle, perfect
# auxiliary, frame, subject tags, object tags. Frames: "intr" no object, "acc"
# accusative object, "dat" dative object, "dat+acc" dative (a person) and
# accusative object, "that" a dass-clause. "*" allows any noun.

Verb = collections.namedtuple(
  "Verb", "en en_past en_part de de_changed de_past de_part aux frame subj obj"
)

VERBS = by_english(
  Verb,
  [
    (
      "sleep",
      "slept",
      "slept",
      "schlafen",
      "schläf",
      "schlief",
      "geschlafen",
      "haben",
      "intr",
      "PA",
      "",
    ),
    ("work", "worked", "worked", "arbeiten", "", "", "gearbeitet", "haben", "intr", "P", ""),
    ("laugh", "laughed", "laughed", "lachen", "", "", "gelacht", "haben", "intr", "P", ""),
    ("run", "ran", "run", "laufen", "läuf", "lief", "gelaufen", "sein", "intr", "PA", ""),
    ("come", "came", "come", "kommen", "", "kam", "gekommen", "sein", "intr", "PA", ""),
    ("wait", "waited", "waited", "warten", "", "", "gewartet", "haben", "intr", "PA", ""),
    ("play", "played", "played", "spielen", "", "", "gespielt", "haben", "intr", "PA", ""),
    ("live", "lived", "lived", "wohnen", "", "", "gewohnt", "haben", "intr", "PA", ""),
    ("travel", "travelled", "travelled", "reisen", "", "", "gereist", "sein", "intr", "P", ""),
    (
      "arrive",
      "arrived",
      "arrived",
      "an|kommen",
      "",
      "kam",
      "angekommen",
      "sein",
      "intr",
      "PA",
      "",
    ),
    (
      "get up",
      "got up",
      "got up",
      "auf|stehen",
      "",
      "stand",
      "aufgestanden",
      "sein",
      "intr",
      "PA",
      "",
    ),
    ("see", "saw", "seen", "sehen", "sieh", "sah", "gesehen", "haben", "acc", "PA", "*"),
    ("read", "read", "read", "lesen", "lies", "las", "gelesen", "haben", "acc", "P", "r"),
    ("buy", "bought", "bought", "kaufen", "", "", "gekauft", "haben", "acc", "P", "T"),
    ("sell", "sold", "sold", "verkaufen", "", "", "verkauft", "haben", "acc", "P", "TA"),
    ("find", "found", "found", "finden", "", "fand", "gefunden", "haben", "acc", "PA", "TA"),
    (
      "look for",
      "looked for",
      "looked for",
      "suchen",
      "",
      "",
      "gesucht",
      "haben",
      "acc",
      "PA",
      "*",
    ),
    ("eat", "ate", "eaten", "essen", "iss", "aß", "gegessen", "haben", "acc", "PA", "e"),
    ("take", "took", "taken", "nehmen", "nimm", "nahm", "genommen", "haben", "acc", "P", "T"),
    ("visit", "visited", "visited", "besuchen", "", "", "besucht", "haben", "acc", "P", "PL"),
    ("love", "loved", "loved", "lieben", "", "", "geliebt", "haben", "acc", "PA", "PA"),
    ("hear", "heard", "heard", "hören", "", "", "gehört", "haben", "acc", "PA", "PA"),
    ("paint", "painted", "painted", "malen", "", "", "gemalt", "haben", "acc", "P", "*"),
    (
      "wash",
      "washed",
      "washed",
      "waschen",
      "wäsch",
      "wusch",
      "gewaschen",
      "haben",
      "acc",
      "P",
      "TA",
    ),
    ("know", "knew", "known", "kennen", "", "kannte", "gekannt", "haben", "acc", "P", "PL"),
    ("meet", "met", "met", "treffen", "triff", "traf", "getroffen", "haben", "acc", "P", "P"),
    (
      "forget",
      "forgot",
      "forgotten",
      "vergessen",
      "vergiss",
      "vergaß",
      "vergessen",
      "haben",
      "acc",
      "P",
      "T",
    ),
    ("call", "called", "called", "an|rufen", "", "rief", "angerufen", "haben", "acc", "P", "P"),
    (
      "invite",
      "invited",
      "invited",
      "ein|laden",
      "läd",
      "lud",
      "eingeladen",
      "haben",
      "acc",
      "P",
      "P",
    ),
    ("open", "opened", "opened", "auf|machen", "", "", "aufgemacht", "haben", "acc", "P", "o"),
    ("help", "helped", "helped", "helfen", "hilf", "half", "geholfen", "haben", "dat", "PA", "PA"),
    ("follow", "followed", "followed", "folgen", "", "", "gefolgt", "sein", "dat", "PA", "PA"),
    (
      "answer",
      "answered",
      "answered",
      "antworten",
      "",
      "",
      "geantwortet",
      "haben",
      "dat",
      "P",
      "P",
    ),
    ("give", "gave", "given", "geben", "gib", "gab", "gegeben", "haben", "dat+acc", "P", "T"),
    ("show", "showed", "shown", "zeigen", "", "", "gezeigt", "haben", "dat+acc", "P", "T"),
    ("send", "sent", "sent", "schicken", "", "", "geschickt", "haben", "dat+acc", "P", "T"),
    (
      "bring",
      "brought",
      "brought",
      "bringen",
      "",
      "brachte",
      "gebracht",
      "haben",
      "dat+acc",
      "P",
      "T",
    ),
    ("say", "said", "said", "sagen", "", "", "gesagt", "haben", "that", "P", ""),
    ("believe", "believed", "believed", "glauben", "", "", "geglaubt", "haben", "that", "P", ""),
    ("think", "thought", "thought", "denken", "", "dachte", "gedacht", "haben", "that", "P", ""),
  ],
)

# Adjectives with the noun tags they combine with.
Adjective = collections.namedtuple("Adjective", "en de tags")

ADJECTIVES = by_english(
  Adjective,
  [
    ("big", "groß", "*"),
    ("small", "klein", "*"),
    ("old", "alt", "*"),
    ("beautiful", "schön", "*"),
    ("black", "schwarz", "*"),
    ("red", "rot", "TLS"),
    ("new", "neu", "TLS"),
    ("empty", "leer", "TLS"),
    ("heavy", "schwer", "TS"),
    ("famous", "berühmt", "PAL"),
    ("young", "jung", "PA"),
    ("hungry", "hungrig", "PA"),
    ("tired", "müde", "PA"),
    ("clever", "klug", "PA"),
    ("friendly", "freundlich", "PA"),
    ("happy", "glücklich", "PA"),
    ("sad", "traurig", "PA"),
    ("angry", "wütend", "PA"),
    ("rich", "reich", "P"),
    ("poor", "arm", "P"),
  ],
)

# Adverbs: kind "time" (English: clause end) or "freq" (English: before the
# verb), the tenses they go with, and whether they can start a sentence.
Adverb = collections.namedtuple("Adverb", "en de kind tenses frontable")

_PAST = ("past", "perfect")
_NONPAST = ("future", "can", "must", "want")
ADVERBS = by_english(
  Adverb,
  [
    ("yesterday", "gestern", "time", _PAST, True),
    ("last week", "letzte Woche", "time", _PAST, True),
    ("this morning", "heute Morgen", "time", _PAST, True),
    ("today", "heute", "time", TENSES, True),
    ("now", "jetzt", "time", ("present", "can", "must", "want"), True),
    ("tomorrow", "morgen", "time", _NONPAST, True),
    ("next week", "nächste Woche", "time", _NONPAST, True),
    ("soon", "bald", "time", _NONPAST, True),
    ("every day", "jeden Tag", "time", ("present", "past", "can", "must"), True),
    ("in the evening", "am Abend", "time", TENSES, True),
    ("on Monday", "am Montag", "time", TENSES, True),
    ("on Friday", "am Freitag", "time", TENSES, True),
    ("on Sunday", "am Sonntag", "time", TENSES, True),
    ("often", "oft", "freq", ("present", "past", "perfect"), True),
    ("sometimes", "manchmal", "freq", ("present", "past", "perfect"), True),
    ("usually", "meistens", "freq", ("present", "past"), True),
    ("always", "immer", "freq", ("present", "past", "perfect", "future"), False),
    ("rarely", "selten", "freq", ("present", "past", "perfect"), False),
    ("never", "nie", "freq", TENSES, False),
    ("already", "schon", "freq", ("perfect",), False),
  ],
)

# Prepositions: German, governed case, tags of their noun, frontable.
Preposition = collections.namedtuple("Preposition", "en de case tags frontable")

PREPOSITIONS = by_english(
  Preposition,
  [
    ("in", "in", "dat", "L", True),
    ("at", "an", "dat", "L", True),
    ("behind", "hinter", "dat", "LS", True),
    ("in front of", "vor", "dat", "LS", True),
    ("next to", "neben", "dat", "LS", True),
    ("on", "auf", "dat", "S", True),
    ("under", "unter", "dat", "S", True),
    ("with", "mit", "dat", "PA", False),
    ("from", "von", "dat", "P", False),
    ("for", "für", "acc", "PA", False),
    ("without", "ohne", "acc", "PA", False),
  ],
)
CONTRACTIONS = {("in", "dem"): "im", ("an", "dem"): "am", ("von", "dem"): "vom"}

# Subject pronouns: English, German, person.
PRONOUNS = {
  "I": ("ich", "1s"),
  "you": ("du", "2s"),
  "he": ("er", "3s"),
  "she": ("sie", "3s"),
  "we": ("wir", "1p"),
  "you all": ("ihr", "2p"),
  "they": ("sie", "3p"),
}

# Subordinating conjunctions: German, and German with a simple past.
CONJUNCTIONS = {
  "because": ("weil", "weil"),
  "although": ("obwohl", "obwohl"),
  "while": ("während", "während"),
  "if": ("wenn", "wenn"),
  "when": ("wenn", "als"),
}

# Determiners: English singular and plural ("" = none), German stem and kind:
# "der" the definite article, "dies" a der-word, "ein" an ein-word.
DETERMINERS = {
  "the": ("the", "the", "", "der"),
  "a": ("a", "", "ein", "ein"),
  "this": ("this", "these", "dies", "dies"),
  "my": ("my", "my", "mein", "ein"),
  "his": ("his", "his", "sein", "ein"),
  "her": ("her", "her", "ihr", "ein"),
  "our": ("our", "our", "unser", "ein"),
  "their": ("their", "their", "ihr", "ein"),
}

# German inflection tables, indexed by gender ("m", "f", "n", "pl") and case.
DEFINITE = {
  "m": {"nom": "der", "acc": "den", "dat": "dem"},
  "f": {"nom": "die", "acc": "die", "dat": "der"},
  "n": {"nom": "das", "acc": "das", "dat": "dem"},
  "pl": {"nom": "die", "acc": "die", "dat": "den"},
}
RELATIVE = {
  "m": {"nom": "der", "acc": "den", "dat": "dem"},
  "f": {"nom": "die", "acc": "die", "dat": "der"},
  "n": {"nom": "das", "acc": "das", "dat": "dem"},
  "pl": {"nom": "die", "acc": "die", "dat": "denen"},
}
DER_WORD_ENDINGS = {
  "m": {"nom": "er", "acc": "en", "dat": "em"},
  "f": {"nom": "e", "acc": "e", "dat": "er"},
  "n": {"nom": "es", "acc": "es", "dat": "em"},
  "pl": {"nom": "e", "acc": "e", "dat": "en"},
}
EIN_WORD_ENDINGS = {
  "m": {"nom": "", "acc": "en", "dat": "em"},
  "f": {"nom": "e", "acc": "e", "dat": "er"},
  "n": {"nom": "", "acc": "", "dat": "em"},
  "pl": {"nom": "e", "acc": "e", "dat": "en"},
}
# Adjective endings after a der-word (weak), after an ein-word (mixed) and
# with no determiner (strong; only plurals go without one).
ADJECTIVE_ENDINGS = {
  "der": {
    "m": {"nom": "e", "acc": "en", "dat": "en"},
    "f": {"nom": "e", "acc": "e", "dat": "en"},
    "n": {"nom": "e", "acc": "e", "dat": "en"},
    "pl": {"nom": "en", "acc": "en", "dat": "en"},
  },
  "ein": {
    "m": {"nom": "er", "acc": "en", "dat": "en"},
    "f": {"nom": "e", "acc": "e", "dat": "en"},
    "n": {"nom": "es", "acc": "es", "dat": "en"},
    "pl": {"nom": "en", "acc": "en", "dat": "en"},
  },
  "none": {"pl": {"nom": "e", "acc": "e", "dat": "en"}},
}

# Finite forms (ich, du, er, wir, ihr, sie) of auxiliaries and modals, and
# the auxiliaries of the tenses that take an infinitive.
AUXILIARIES = {
  "haben": ("habe", "hast", "hat", "haben", "habt", "haben"),
  "sein": ("bin", "bist", "ist", "sind", "seid", "sind"),
  "werden": ("werde", "wirst", "wird", "werden", "werdet", "werden"),
  "können": ("kann", "kannst", "kann", "können", "könnt", "können"),
  "müssen": ("muss", "musst", "muss", "müssen", "müsst", "müssen"),
  "wollen": ("will", "willst", "will", "wollen", "wollt", "wollen"),
}
EN_MODALS = {"future": "will", "can": "can", "must": "must"}
DE_MODALS = {"future": "werden", "can": "können", "must": "müssen", "want": "wollen"}


# ---------------------------------------------------------------------------
# Abstract syntax. Lexical items are named by their English key.


@dataclasses.dataclass
class Relative:
  """A relative clause; `gap` is the antecedent's role in it."""

  verb: str
  tense: str = "present"
  gap: str = "subject"  # "subject" or "object"
  other: "NP | None" = None  # the object (subject gap) or the subject


@dataclasses.dataclass
class NP:
  """A noun phrase, or a subject pronoun if `pronoun` is set."""

  noun: str | None = None
  number: str = "sg"  # "sg" or "pl"
  det: str = "the"
  adjective: str | None = None
  pronoun: str | None = None
  relative: Relative | None = None


@dataclasses.dataclass
class PP:
  prep: str
  np: NP


@dataclasses.dataclass
class Clause:
  """One clause. `obj` is the accusative object, or the dative object of a
  "dat" verb; `indirect` is the dative object of a "dat+acc" verb;
  `complement` is the dass-clause of a "that" verb."""

  subject: NP
  verb: str
  tense: str = "present"
  obj: NP | None = None
  indirect: NP | None = None
  pp: PP | None = None
  adverb: str | None = None
  complement: "Clause | None" = None


@dataclasses.dataclass
class Sentence:
  """A main clause with an optional adverbial clause (`conj` + `adjunct`).

  `front` is what precedes the finite verb in a statement: "subject",
  "adverb", "pp" or "adjunct"; a question has the verb first.
  """

  clause: Clause
  front: str = "subject"
  question: bool = False
  conj: str | None = None
  adjunct: Clause | None = None


# ---------------------------------------------------------------------------
# English realisation.


def en_third_singular(verb):
  """'look for' -> 'looks for': inflect the first word."""
  word, _, rest = verb.partition(" ")
  if word.endswith(("s", "x", "z", "ch", "sh", "o")):
    word += "es"
  elif word.endswith("y") and word[-2] not in "aeiou":
    word = word[:-1] + "ies"
  else:
    word += "s"
  return f"{word} {rest}".rstrip()


def person(np):
  return PRONOUNS[np.pronoun][1] if np.pronoun else "3" + np.number[0]


def en_np(np):
  if np.pronoun:
    return [np.pronoun]
  noun = NOUNS[np.noun]
  words = [ADJECTIVES[np.adjective].en] if np.adjective else []
  words.append(noun.en if np.number == "sg" else noun.en_pl)
  det = DETERMINERS[np.det][0 if np.number == "sg" else 1]
  if det == "a" and words[0][0] in "aeiou":
    det = "an"
  tokens = ([det] if det else []) + words
  if np.relative:
    tokens += en_relative(np, np.relative)
  return tokens


def en_relative(antecedent, relative):
  pronoun = "who" if "P" in NOUNS[antecedent.noun].tags else "that"
  return [pronoun] + en_clause(relative_clause(antecedent, relative), gap=relative.gap)


def en_verb(clause, question=False):
  """(auxiliary words, main verb words) of a clause's verb."""
  verb, third = VERBS[clause.verb], person(clause.subject) == "3s"
  if clause.tense == "perfect":
    return ["has" if third else "have"], [verb.en_part]
  if clause.tense in ("future", "can", "must"):
    return [EN_MODALS[clause.tense]], [verb.en]
  if question:
    do = "did" if clause.tense == "past" else "does" if third else "do"
    return [do], (["want to"] if clause.tense == "want" else []) + [verb.en]
  if clause.tense == "want":
    return [], ["wants to" if third else "want to", verb.en]
  if clause.tense == "past":
    return [], [verb.en_past]
  return [], [en_third_singular(verb.en) if third else verb.en]


def en_clause(clause, gap=None, question=False, front=None):
  """English words of a clause; `gap` omits the relativised subject or
  object, `front` omits the fronted adverb or pp."""
  aux, main = en_verb(clause, question)
  adverb = clause.adverb if front != "adverb" else None
  freq = [ADVERBS[adverb].en] if adverb and ADVERBS[adverb].kind == "freq" else []
  time = [ADVERBS[adverb].en] if adverb and ADVERBS[adverb].kind == "time" else []
  subject = [] if gap == "subject" else en_np(clause.subject)
  if question:
    words = aux + subject + freq + main
  else:
    words = subject + aux + freq + main
  if clause.indirect:
    words += en_np(clause.indirect)
  if clause.obj and gap != "object":
    words += en_np(clause.obj)
  if clause.pp and front != "pp":
    words += en_pp(clause.pp)
  words += time
  if clause.complement:
    words += ["that"] + en_clause(clause.complement)
  return words


def en_pp(pp):
  return [pp.prep] + en_np(pp.np)


def en_sentence(sentence):
  clause = sentence.clause
  words = en_front(sentence) + en_clause(clause, question=sentence.question, front=sentence.front)
  if sentence.adjunct and sentence.front != "adjunct":
    words += en_adjunct(sentence)
  return finish(words, "?" if sentence.question else ".")


def en_front(sentence):
  """Words before the subject of an English statement."""
  if sentence.front == "adverb":
    return [ADVERBS[sentence.clause.adverb].en]
  if sentence.front == "pp":
    return en_pp(sentence.clause.pp)
  if sentence.front == "adjunct":
    return en_adjunct(sentence) + [","]
  return []


def en_adjunct(sentence):
  return [sentence.conj] + en_clause(sentence.adjunct)


# ---------------------------------------------------------------------------
# German realisation.


@functools.lru_cache(maxsize=None)
def de_stem(verb):
  """(separable prefix, stem) of a verb: 'an|rufen' -> ('an', 'ruf')."""
  prefix, _, infinitive = verb.de.rpartition("|")
  return prefix, infinitive[:-2]


def de_infinitive(verb):
  return verb.de.replace("|", "")


def de_present(verb, who):
  """Present tense form, without a separable prefix."""
  _, stem = de_stem(verb)
  if who in ("1p", "3p"):
    return stem + "en"
  if who == "1s":
    return stem + "e"
  if verb.de_changed and who in ("2s", "3s"):
    changed = verb.de_changed
    if who == "2s":
      return changed + ("t" if changed.endswith(("s", "ß", "z", "x")) else "st")
    return changed + ("" if changed.endswith("t") else "t")
  if who == "2s" and stem.endswith(("s", "ß", "z", "x")):
    return stem + "t"
  return stem + ("e" if stem.endswith(("t", "d")) else "") + ("st" if who == "2s" else "t")


def de_past(verb, who):
  """Simple past form, without a separable prefix."""
  _, stem = de_stem(verb)
  past = verb.de_past or stem + ("ete" if stem.endswith(("t", "d")) else "te")
  if who in ("1s", "3s"):
    return past
  if who in ("1p", "3p"):
    return past + ("n" if past.endswith("e") else "en")
  if past.endswith("e"):
    return past + ("st" if who == "2s" else "t")
  if who == "2s":
    return past + ("est" if past.endswith(("t", "d", "s", "ß", "sch")) else "st")
  return past + ("et" if past.endswith(("t", "d")) else "t")


def de_verb(clause):
  """(finite verb, right bracket words) of a clause in main-clause order."""
  verb, who = VERBS[clause.verb], person(clause.subject)
  p = PERSONS.index(who)
  prefix, _ = de_stem(verb)
  if clause.tense in ("present", "past"):
    inflect = de_present if clause.tense == "present" else de_past
    return inflect(verb, who), [prefix] if prefix else []
  if clause.tense == "perfect":
    return AUXILIARIES[verb.aux][p], [verb.de_part]
  return AUXILIARIES[DE_MODALS[clause.tense]][p], [de_infinitive(verb)]


def de_noun(np, case):
  noun = NOUNS[np.noun]
  if np.number == "pl":
    form = noun.de_pl
    return form + "n" if case == "dat" and not form.endswith(("n", "s")) else form
  if np.noun in WEAK_NOUNS and case != "nom":
    return noun.de_pl
  return noun.de


def de_np(np, case):
  if np.pronoun:
    return [PRONOUNS[np.pronoun][0]]
  gender = "pl" if np.number == "pl" else NOUNS[np.noun].gender
  _, _, stem, kind = DETERMINERS[np.det]
  if kind == "der":
    det = DEFINITE[gender][case]
  elif kind == "ein" and not (stem == "ein" and gender == "pl"):  # "a": no plural
    det = stem + EIN_WORD_ENDINGS[gender][case]
  elif kind == "dies":
    det = stem + DER_WORD_ENDINGS[gender][case]
  else:
    det = ""
  tokens = [det] if det else []
  if np.adjective:
    adjective = ADJECTIVES[np.adjective].de
    adjective = adjective[:-1] if adjective.endswith("e") else adjective
    declension = "none" if not det else "der" if kind in ("der", "dies") else "ein"
    tokens.append(adjective + ADJECTIVE_ENDINGS[declension][gender][case])
  tokens.append(de_noun(np, case))
  if np.relative:
    tokens += de_relative(np, np.relative)
  return tokens


def de_relative(antecedent, relative):
  clause = relative_clause(antecedent, relative)
  case = "nom" if relative.gap == "subject" else object_case(VERBS[relative.verb])
  gender = "pl" if antecedent.number == "pl" else NOUNS[antecedent.noun].gender
  return [",", RELATIVE[gender][case]] + de_subordinate(clause, gap=relative.gap) + [","]


def de_pp(pp):
  prep = PREPOSITIONS[pp.prep]
  tokens = de_np(pp.np, prep.case)
  if (prep.de, tokens[0]) in CONTRACTIONS:
    return [CONTRACTIONS[prep.de, tokens[0]]] + tokens[1:]
  return [prep.de] + tokens


def object_case(verb):
  return "dat" if verb.frame == "dat" else "acc"


def de_middle_field(clause, gap=None, front=None):
  """Objects and adjuncts between the verb positions (subject excluded)."""
  tokens = []
  if clause.adverb and front != "adverb":
    tokens += ADVERBS[clause.adverb].de.split()
  if clause.indirect:
    tokens += de_np(clause.indirect, "dat")
  if clause.obj and gap != "object":
    tokens += de_np(clause.obj, object_case(VERBS[clause.verb]))
  if clause.pp and front != "pp":
    tokens += de_pp(clause.pp)
  return tokens


def de_subordinate(clause, gap=None):
  """Verb-final clause body, after its conjunction or relative pronoun."""
  finite, right = de_verb(clause)
  if clause.tense in ("present", "past"):
    verbs = ["".join(right) + finite]
  else:
    verbs = right + [finite]
  subject = [] if gap == "subject" else de_np(clause.subject, "nom")
  return subject + de_middle_field(clause, gap) + verbs


def de_sentence(sentence):
  """Verb first (question) or verb second: prefield, finite verb, subject
  unless it is the prefield, middle field, right bracket, dass/adjunct clause."""
  clause = sentence.clause
  finite, right = de_verb(clause)
  subject = de_np(clause.subject, "nom")
  middle = de_middle_field(clause, front=sentence.front)
  if sentence.question:
    tokens = [finite] + subject + middle + right
  elif sentence.front == "subject":
    tokens = subject + [finite] + middle + right
  else:
    tokens = de_prefield(sentence) + [finite] + subject + middle + right
  if clause.complement:
    tokens += [",", "dass"] + de_subordinate(clause.complement)
  if sentence.adjunct and sentence.front != "adjunct":
    tokens += [","] + de_adjunct(sentence)
  return finish(tokens, "?" if sentence.question else ".")


def de_prefield(sentence):
  """A fronted adverb, place phrase or adverbial clause."""
  if sentence.front == "adverb":
    return ADVERBS[sentence.clause.adverb].de.split()
  if sentence.front == "pp":
    return de_pp(sentence.clause.pp)
  return de_adjunct(sentence) + [","]


def de_adjunct(sentence):
  present, past = CONJUNCTIONS[sentence.conj]
  return [past if sentence.adjunct.tense == "past" else present] + (
    de_subordinate(sentence.adjunct)
  )


# ---------------------------------------------------------------------------
# Shared helpers.


def relative_clause(antecedent, relative):
  """The relative clause as a Clause, the antecedent filling the gap."""
  head = NP(noun=antecedent.noun, number=antecedent.number)
  if relative.gap == "subject":
    return Clause(subject=head, verb=relative.verb, tense=relative.tense, obj=relative.other)
  return Clause(subject=relative.other, verb=relative.verb, tense=relative.tense, obj=head)


def finish(tokens, end):
  """Words -> text: one comma at most between words (a relative clause and
  the clause after it both bring one), none before the end, capitalised
  first word, punctuation attached to the word before it."""
  text = " ".join(tokens).replace(", ,", ",").removesuffix(" ,").replace(" ,", ",")
  return text[0].upper() + text[1:] + end


def translate(sentence):
  """(English, German) text of a Sentence."""
  return en_sentence(sentence), de_sentence(sentence)


def count_tokens(text):
  """Words and punctuation marks (commas and the final mark) of a sentence."""
  return len(text.split()) + text.count(",") + 1


# ---------------------------------------------------------------------------
# Sampling.


@functools.lru_cache(maxsize=None)
def nouns_with(tags):
  """Nouns with one of `tags` ("*": all)."""
  return tuple(key for key, noun in NOUNS.items() if tags == "*" or set(tags) & set(noun.tags))


@functools.lru_cache(maxsize=None)
def adjectives_for(noun):
  tags = set(NOUNS[noun].tags)
  return tuple(
    key
    for key, adjective in ADJECTIVES.items()
    if adjective.tags == "*" or tags & set(adjective.tags)
  )


@functools.lru_cache(maxsize=None)
def verbs_for(noun, gap):
  """Verbs whose subject (gap "subject") or object can be `noun`."""
  tags = set(NOUNS[noun].tags)
  if gap == "subject":
    return tuple(
      key
      for key, verb in VERBS.items()
      if verb.frame in ("intr", "acc", "dat") and tags & set(verb.subj)
    )
  return tuple(
    key
    for key, verb in VERBS.items()
    if verb.frame in ("acc", "dat") and (verb.obj == "*" or tags & set(verb.obj))
  )


def weighted(weights):
  """{key: weight} -> (keys, cumulative weights), for `choose`."""
  return tuple(weights), tuple(itertools.accumulate(weights.values()))


def pick(rng, options):
  """A uniformly random element of a sequence (faster than Random.choice)."""
  return options[int(rng.random() * len(options))]


def choose(rng, choices):
  """A key drawn from `weighted` choices."""
  keys, cumulative = choices
  return keys[bisect.bisect(cumulative, rng.random() * cumulative[-1])]


MAIN_TENSES = {
  "present": 30,
  "past": 20,
  "perfect": 20,
  "future": 10,
  "can": 7,
  "must": 7,
  "want": 6,
}
RELATIVE_TENSES = {"present": 5, "past": 3, "perfect": 2}
DETERMINERS_WEIGHTED = weighted(
  {"the": 45, "a": 25, "this": 8, "my": 6, "his": 4, "her": 4, "our": 4, "their": 4}
)
MAIN_VERBS = tuple(VERBS)
SUBORDINATE_VERBS = tuple(key for key, verb in VERBS.items() if verb.frame != "that")
PRONOUN_KEYS, PREPOSITION_KEYS = tuple(PRONOUNS), tuple(PREPOSITIONS)
CONJUNCTION_KEYS = tuple(CONJUNCTIONS)


@functools.lru_cache(maxsize=None)
def tenses_for(verb, relative):
  """Weighted tenses of a verb; no simple past if English cannot show it."""
  tenses = RELATIVE_TENSES if relative else MAIN_TENSES
  if VERBS[verb].en_past == VERBS[verb].en:
    tenses = {tense: w for tense, w in tenses.items() if tense != "past"}
  return weighted(tenses)


@functools.lru_cache(maxsize=None)
def adverbs_for(tense):
  return tuple(key for key, adverb in ADVERBS.items() if tense in adverb.tenses)


def random_np(rng, tags, relative_prob=0.0, pronoun_prob=0.0):
  if "P" in tags and rng.random() < pronoun_prob:
    return NP(pronoun=pick(rng, PRONOUN_KEYS))
  noun = pick(rng, nouns_with(tags))
  np = NP(
    noun=noun, number="pl" if rng.random() < 0.3 else "sg", det=choose(rng, DETERMINERS_WEIGHTED)
  )
  if rng.random() < 0.3:
    np.adjective = pick(rng, adjectives_for(noun))
  if rng.random() < relative_prob:
    np.relative = random_relative(rng, noun)
  return np


def random_relative(rng, noun):
  can_be_subject = bool(verbs_for(noun, "subject"))
  gap = "subject" if can_be_subject and rng.random() < 0.6 else "object"
  verb = pick(rng, verbs_for(noun, gap))
  relative = Relative(verb=verb, tense=choose(rng, tenses_for(verb, True)), gap=gap)
  if gap == "object":
    relative.other = random_np(rng, VERBS[verb].subj, pronoun_prob=0.3)
  elif VERBS[verb].frame != "intr":
    relative.other = random_np(rng, VERBS[verb].obj)
  return relative


def random_clause(rng, main):
  """A clause; only main clauses take "that" verbs (a dass-clause)."""
  verb = pick(rng, MAIN_VERBS if main else SUBORDINATE_VERBS)
  v = VERBS[verb]
  relative_prob = 0.12 if main else 0.06
  tense = choose(rng, tenses_for(verb, False))
  clause = Clause(
    subject=random_np(rng, v.subj, relative_prob, pronoun_prob=0.3), verb=verb, tense=tense
  )
  if v.frame == "dat+acc":
    clause.indirect = random_np(rng, "P", relative_prob)
  if v.frame in ("acc", "dat", "dat+acc"):
    clause.obj = random_np(rng, v.obj, relative_prob)
  if rng.random() < 0.35:
    clause.adverb = pick(rng, adverbs_for(tense))
  if v.frame == "that":
    clause.complement = random_clause(rng, main=False)
  elif rng.random() < 0.3:
    prep = pick(rng, PREPOSITION_KEYS)
    clause.pp = PP(prep, random_np(rng, PREPOSITIONS[prep].tags))
  return clause


def random_sentence(rng):
  clause = random_clause(rng, main=True)
  sentence = Sentence(clause, question=rng.random() < 0.1)
  if not clause.complement and rng.random() < 0.3:
    sentence.conj = pick(rng, CONJUNCTION_KEYS)
    sentence.adjunct = random_clause(rng, main=False)
  if sentence.question:
    return sentence
  if sentence.adjunct and rng.random() < 0.35:
    sentence.front = "adjunct"
  elif clause.adverb and ADVERBS[clause.adverb].frontable and rng.random() < 0.5:
    sentence.front = "adverb"
  elif clause.pp and PREPOSITIONS[clause.pp.prep].frontable and rng.random() < 0.4:
    sentence.front = "pp"
  return sentence


# ---------------------------------------------------------------------------
# Corpus.

MIN_TOKENS, MAX_TOKENS = 4, 40


def split_of(source):
  """Stable split of a source sentence: 2.5% dev, 2.5% test, 95% train."""
  bucket = int.from_bytes(hashlib.sha256(source.encode("utf-8")).digest()[:8], "big") % 40
  return constants.DEV if bucket == 0 else constants.TEST if bucket == 1 else constants.TRAIN


@functools.lru_cache(maxsize=4)
def _corpus(seed, num_train, num_eval):
  """{split: pairs}: the first sentences of each split in the seeded stream."""
  rng = random.Random(seed)
  wanted = {constants.TRAIN: num_train, constants.DEV: num_eval, constants.TEST: num_eval}
  splits = {split: [] for split in SPLITS}
  seen = set()
  missing = num_train + 2 * num_eval
  for _ in range(100 * missing + 100_000):
    if not missing:
      return splits
    english, german = translate(random_sentence(rng))
    if english in seen or not (
      MIN_TOKENS <= count_tokens(english) <= MAX_TOKENS
      and MIN_TOKENS <= count_tokens(german) <= MAX_TOKENS
    ):
      continue
    seen.add(english)
    split = split_of(english)
    if len(splits[split]) < wanted[split]:
      splits[split].append((english, german))
      missing -= 1
  raise RuntimeError(f"the grammar did not yield {wanted} distinct sentences")


def generate_pairs(split, seed=1234, num_train=60000, num_eval=1000):
  """(english, german) pairs of the split, deterministic given (seed, sizes).

  train has num_train distinct pairs; dev and test num_eval each; all three
  disjoint by source.
  """
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
  return list(_corpus(seed, num_train, num_eval)[split])
