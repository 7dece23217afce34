"""OOLONG-synth-style aggregation over labelled records.

Why templates: each instance is a question whose *answer type* is one of TREC's six coarse
classes, so the label is known by construction yet must be inferred from meaning (no
instance contains its label's name; banks such as landmarks are shared across labels, e.g.
"How tall is X?" vs "Where is X located?"). Answering needs a pass over every line, which
is what makes the task hard for a model that only sees part of the context.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date

from fleet_rlm.bench.tasks import Task

LABELS = ("abbreviation", "entity", "description", "human being", "location", "numeric value")
QUESTION_KINDS = (
    "most_frequent",
    "least_frequent",
    "label_count",
    "user_label_count",
    "compare_labels",
)

# fmt: off
_LANDMARKS = (
    "the Eiffel Tower", "the Golden Gate Bridge", "Mount Kilimanjaro", "the Great Wall",
    "the Statue of Liberty", "Big Ben", "the Taj Mahal", "the Sydney Opera House",
    "Machu Picchu", "the Colosseum", "Niagara Falls", "the Leaning Tower of Pisa",
)
_COUNTRIES = (
    "Peru", "Norway", "Kenya", "Japan", "Portugal", "Canada", "Vietnam", "Chile", "Egypt",
    "Finland", "Morocco", "New Zealand", "Argentina", "Greece", "Mongolia", "Iceland",
)
_CITIES = (
    "Lisbon", "Osaka", "Nairobi", "Toronto", "Vienna", "Marrakesh", "Melbourne", "Prague",
    "Seattle", "Cairo", "Buenos Aires", "Edinburgh", "Hanoi", "Montreal",
)
_PEOPLE = (
    "Albert Einstein", "Marie Curie", "Frida Kahlo", "Nelson Mandela", "Ada Lovelace",
    "Charles Darwin", "Amelia Earhart", "Pablo Picasso", "Isaac Newton", "Jane Austen",
    "Louis Armstrong", "Nikola Tesla", "Mahatma Gandhi", "Wolfgang Amadeus Mozart",
)
_BANKS: dict[str, tuple[str, ...]] = {
    "landmark": _LANDMARKS, "country": _COUNTRIES, "country2": _COUNTRIES, "city": _CITIES,
    "person": _PEOPLE,
    "abbr": ("NASA", "UNESCO", "CPU", "HTML", "NATO", "DNA", "LASER", "SCUBA", "RSVP", "OPEC",
             "FIFA", "GDP", "UNICEF", "MRI", "HDMI", "URL", "NAFTA", "RADAR", "USB", "ATM"),
    "longname": ("the World Health Organization", "the Federal Bureau of Investigation",
                 "the International Monetary Fund", "a personal identification number",
                 "the European Space Agency", "an intensive care unit",
                 "the International Olympic Committee", "frequently asked questions",
                 "the National Basketball Association", "a digital versatile disc"),
    "field": ("medicine", "computing", "aviation", "chemistry", "banking", "shipping",
              "astronomy", "the military"),
    "dog_trait": ("herding sheep", "its wrinkled face", "pulling sleds", "its spotted coat",
                  "rescuing people in the Alps", "its very short legs"),
    "fruit": ("acorns", "pine nuts", "maple syrup", "cashews", "figs", "dates", "olives"),
    "sport_gear": ("a shuttlecock", "a puck and sticks", "an oval ball", "a racket and a net",
                   "a bat and wickets", "stones and brooms on ice"),
    "dish": ("paella", "hummus", "guacamole", "risotto", "pesto", "sauerkraut", "tofu"),
    "color": ("red", "blue", "yellow", "white", "green"),
    "color2": ("black", "orange", "purple", "yellow", "blue"),
    "animal_trait": ("changing its skin color", "sleeping standing up", "its black and white "
                     "stripes", "having three hearts", "carrying its young in a pouch"),
    "plural_things": ("cats", "leaves", "birds", "bees", "volcanoes", "stars", "onions",
                      "people", "glaciers", "owls"),
    "behavior": ("purr", "change color in autumn", "migrate south", "make honey", "erupt",
                 "twinkle", "make us cry", "yawn", "move", "hunt at night"),
    "device": ("a refrigerator", "a microwave oven", "a compass", "a thermostat",
               "a jet engine", "a solar panel", "a vaccine", "the stock market"),
    "concept": ("weather", "a virus", "an alligator", "a democracy", "a comet", "a simile",
                "inflation", "a sonnet"),
    "concept2": ("climate", "a bacterium", "a crocodile", "a republic", "an asteroid",
                 "a metaphor", "recession", "a haiku"),
    "idiom": ("break the ice", "bite the bullet", "spill the beans", "cut corners",
              "burn the midnight oil", "hit the nail on the head"),
    "term": ("opportunity cost", "photosynthesis", "habeas corpus", "entropy",
             "the placebo effect", "supply and demand"),
    "task": ("tie a bowline knot", "make sourdough bread", "remove a red wine stain",
             "change a flat tire", "grow tomatoes indoors", "train a puppy"),
    "invention": ("telephone", "light bulb", "printing press", "television", "steam engine",
                  "bicycle", "typewriter", "barometer"),
    "novel": ("Moby Dick", "Pride and Prejudice", "War and Peace", "Don Quixote",
              "Frankenstein", "The Great Gatsby", "Things Fall Apart"),
    "painting": ("the Mona Lisa", "The Starry Night", "Guernica", "The Last Supper",
                 "The Persistence of Memory", "Girl with a Pearl Earring"),
    "feat": ("climb Mount Everest", "fly solo across the Atlantic", "walk on the moon",
             "reach the South Pole", "swim the English Channel", "sail around the world"),
    "discovery": ("penicillin", "radium", "the electron", "oxygen", "insulin",
                  "the structure of DNA"),
    "office": ("prime minister", "president", "head of state", "foreign minister"),
    "natural": ("wild pandas", "penguins", "redwood trees", "coral reefs", "kangaroos",
                "hot springs", "polar bears"),
    "countable": ("bones are in the human hand", "players are on a soccer team",
                  "keys are on a standard piano", "moons does Jupiter have",
                  "days are in a leap year", "strings does a cello have",
                  "squares are on a chessboard", "teeth does an adult have"),
    "event": ("the Berlin Wall fall", "the Titanic sink", "the first moon landing happen",
              "the French Revolution begin", "the Olympic Games return to Athens",
              "World War I end"),
    "product": ("gallon of milk", "first-class stamp", "new laptop", "cup of coffee",
                "movie ticket", "used car"),
    "substance": ("water", "ethanol", "olive oil", "mercury", "liquid nitrogen"),
}
TEMPLATES: dict[str, tuple[str, ...]] = {
    "abbreviation": (
        "What does {abbr} stand for?",
        "What is the full form of {abbr}?",
        "{abbr} is an acronym for what?",
        "What is the usual short form of {longname}?",
        "In {field}, what do the letters {abbr} mean?",
    ),
    "entity": (
        "What breed of dog is best known for {dog_trait}?",
        "What kind of tree gives us {fruit}?",
        "Which sport is played with {sport_gear}?",
        "What is the main ingredient in {dish}?",
        "What color do you get by mixing {color} and {color2}?",
        "Which animal is famous for {animal_trait}?",
        "What instrument did {person} play as a hobby?",
    ),
    "description": (
        "Why do {plural_things} {behavior}?",
        "How does {device} work?",
        "What is the difference between {concept} and {concept2}?",
        "What does it mean to {idiom}?",
        "What is meant by the term {term}?",
        "How do you {task}?",
    ),
    "human being": (
        "Who invented the {invention}?",
        "Who wrote the novel {novel}?",
        "Who painted {painting}?",
        "Who was the first person to {feat}?",
        "Which scientist discovered {discovery}?",
        "Who is the current {office} of {country}?",
        "Who taught {person} as a child?",
    ),
    "location": (
        "Where is {landmark} located?",
        "What is the capital of {country}?",
        "In which city was {person} born?",
        "Where can you see {natural} in the wild?",
        "What river flows through {city}?",
        "Which country lies between {country} and {country2} on the map?",
        "Where did {person} spend the last years of their life?",
    ),
    "numeric value": (
        "How many {countable}?",
        "What year did {event}?",
        "How tall is {landmark}?",
        "How far is {city} from {landmark}?",
        "What is the population of {city}?",
        "How much does a {product} cost in {country}?",
        "At what temperature does {substance} boil?",
        "How old was {person} when they died?",
    ),
}
# fmt: on
_SLOTS = {
    t: tuple(name for _, name, _, _ in string.Formatter().parse(t) if name)
    for ts in TEMPLATES.values()
    for t in ts
}
_BASE_SHARES = (0.30, 0.22, 0.17, 0.13, 0.10, 0.08)  # permuted per seed: skewed, distinct
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAY0, _DAY1 = date(2019, 1, 1).toordinal(), date(2024, 12, 31).toordinal()
_AVG_LINE = 85
_HEADER = (
    "The following lines contain {n} records, one per line. Each line has a date, a user ID "
    "and an instance, which is a question someone asked. Each instance can be classified "
    "into exactly one of {k} labels by the kind of answer it asks for: {labels}. The labels "
    "are not written in the data; infer each one from the meaning of the question."
)


def _header(n_records: int) -> str:
    return _HEADER.format(n=n_records, k=len(LABELS), labels=", ".join(f"'{x}'" for x in LABELS))


def instance(label: str, rng: random.Random) -> str:
    """One question of the given label from that label's templates."""
    t = rng.choice(TEMPLATES[label])
    vals = {s: rng.choice(_BANKS[s]) for s in _SLOTS[t]}
    for s in _SLOTS[t]:  # "mixing red and red" would read oddly: make "x2" differ from "x"
        base = s[:-1]
        if s.endswith("2") and vals.get(base) == vals[s]:
            vals[s] = rng.choice([v for v in _BANKS[s] if v != vals[base]])
    return t.format(**vals)


def _records(n_chars: int, rng: random.Random) -> tuple[list[str], list[str], list[int]]:
    """Lines filling ``n_chars`` (header included), their hidden labels and user IDs."""
    shares = list(_BASE_SHARES)
    rng.shuffle(shares)
    n_users = max(8, n_chars // (_AVG_LINE * 30))
    users = rng.sample(range(10_000, 100_000), min(n_users, 90_000))
    user_w = _cum_zipf(len(users))
    budget = n_chars - len(_header(n_chars // _AVG_LINE)) - 2  # "\n\n" after the header
    lines: list[str] = []
    labels: list[str] = []
    uids: list[int] = []
    total = 0
    while True:
        k = max(16, (budget - total) // _AVG_LINE + 16)
        batch_labels = rng.choices(LABELS, weights=shares, k=k)
        batch_users = rng.choices(users, cum_weights=user_w, k=k)
        for lab, uid in zip(batch_labels, batch_users, strict=True):
            d = date.fromordinal(rng.randint(_DAY0, _DAY1))
            line = (
                f"Date: {_MONTHS[d.month - 1]} {d.day:02d}, {d.year} || User: {uid} || "
                f"Instance: {instance(lab, rng)}"
            )
            cost = len(line) + (1 if lines else 0)
            if total + cost > budget:
                return lines, labels, uids
            lines.append(line)
            labels.append(lab)
            uids.append(uid)
            total += cost


def _cum_zipf(n: int, exponent: float = 0.8) -> list[float]:
    """Cumulative Zipf-like weights so a few users are heavy and most are light."""
    out, acc = [], 0.0
    for rank in range(1, n + 1):
        acc += rank**-exponent
        out.append(acc)
    return out


def _unique_extremes(counts: Counter) -> bool:
    values = sorted(counts[lab] for lab in LABELS)
    return values[0] < values[1] and values[-2] < values[-1]


def _question(kind: str, data: dict, rng: random.Random) -> tuple[str, str | int, dict]:
    counts: Counter = data["label_counts"]
    opts = "Answer with exactly one of the labels: " + ", ".join(LABELS) + "."
    if kind == "most_frequent":
        return (
            f"Among all instances above, which label is the most common? {opts}",
            max(LABELS, key=counts.__getitem__),
            {},
        )
    if kind == "least_frequent":
        return (
            f"Among all instances above, which label is the least common? {opts}",
            min(LABELS, key=counts.__getitem__),
            {},
        )
    if kind == "label_count":
        lab = rng.choice(LABELS)
        return (
            f"How many instances in the data should be classified as '{lab}'? "
            "Answer with a single integer.",
            counts[lab],
            {"label": lab},
        )
    if kind == "user_label_count":
        per_user: Counter = Counter(data["users"])
        heavy = sorted(per_user, key=lambda u: (-per_user[u], u))[: max(3, len(per_user) // 10)]
        uid = rng.choice(heavy)
        mine = Counter(
            lab for u, lab in zip(data["users"], data["labels"], strict=True) if u == uid
        )
        lab = rng.choice(sorted(mine))
        return (
            f"How many instances from user {uid} should be classified as '{lab}'? "
            "Answer with a single integer.",
            mine[lab],
            {"label": lab, "user": uid},
        )
    if kind == "compare_labels":
        pairs = [
            (a, b) for i, a in enumerate(LABELS) for b in LABELS[i + 1 :] if counts[a] != counts[b]
        ]
        a, b = rng.choice(pairs)
        if rng.random() < 0.5:
            a, b = b, a
        return (
            f"Which label is more common in the data: '{a}' or '{b}'? "
            "Answer with exactly one of the two labels.",
            a if counts[a] > counts[b] else b,
            {"labels_compared": (a, b)},
        )
    raise ValueError(f"unknown question kind {kind!r}")


def make_oolong_tasks(
    n_chars: int,
    seed: int,
    kinds: Iterable[str] = QUESTION_KINDS,
) -> list[Task]:
    """Build the records for ``(n_chars, seed)`` once and ask each question kind about them.

    The context depends only on ``(n_chars, seed)``; every returned task shares the same
    string, so a suite does not hold five copies of an 8M-character context. Seeds whose
    counts tie at the top or bottom are re-drawn (deterministically) so gold is unique.
    """
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in QUESTION_KINDS]
    if unknown:
        raise ValueError(f"unknown question kind(s) {unknown}; expected {QUESTION_KINDS}")
    for attempt in range(100):
        rng = random.Random(f"oolong-data:{seed}:{n_chars}:{attempt}")
        lines, labels, uids = _records(n_chars, rng)
        counts = Counter(labels)
        if len(lines) >= 2 * len(LABELS) and _unique_extremes(counts):
            break
    else:
        raise ValueError(f"n_chars={n_chars} is too small for an aggregation task")
    context = _header(len(lines)) + "\n\n" + "\n".join(lines)
    labels_t = tuple(labels)
    data = {"labels": labels_t, "label_counts": counts, "users": uids}
    tasks = []
    for kind in kinds:
        q, gold, extra = _question(kind, data, random.Random(f"oolong-q:{seed}:{n_chars}:{kind}"))
        tasks.append(
            Task(
                task_id=f"oolong-{n_chars}-{kind}-s{seed}",
                kind="oolong",
                context=context,
                question=q,
                gold=gold,
                meta={
                    "n_chars": n_chars,
                    "seed": seed,
                    "question_kind": kind,
                    "label_set": LABELS,
                    "n_records": len(lines),
                    "labels": labels_t,
                    "label_counts": dict(counts),
                    **extra,
                },
            )
        )
    return tasks


def make_oolong(n_chars: int, question_kind: str, seed: int) -> Task:
    """One aggregation task; see :func:`make_oolong_tasks`."""
    return make_oolong_tasks(n_chars, seed, (question_kind,))[0]


def label_of(text: str, labels: Sequence[str] = LABELS) -> str | None:
    """Label of an instance text by matching it against the templates (for tests/analysis);
    ``None`` if no template, or templates of more than one label, could have produced it."""
    hits = set()
    for lab in labels:
        for t in TEMPLATES[lab]:
            pattern = re.escape(t)
            for s in _SLOTS[t]:
                alt = "|".join(re.escape(v) for v in _BANKS[s])
                pattern = pattern.replace(re.escape("{" + s + "}"), f"(?:{alt})", 1)
            if re.fullmatch(pattern, text):
                hits.add(lab)
    return hits.pop() if len(hits) == 1 else None
