"""Single-needle haystack (after RULER's ``niah_single``).

Why generated filler instead of RULER's essays: no downloads, and sentences are composed
from seeded word banks so nearly every line is distinct; the needle is not "the only line
that differs". Slots are drawn in bulk with ``random.choices``, which keeps 8M characters
well under a second.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from itertools import accumulate

from fleet_rlm.bench.tasks import Task

NEEDLE = "One of the special magic numbers for {key} is: {value}."
QUESTION = "What is the special magic number for {key} mentioned in the provided text?"

# fmt: off
# Filler sentence templates. Slots: 0 subject, 1 verb (past), 2 object, 3 adverbial,
# 4 place, 5 year, 6 subject2, 7 verb2, 8 object2, 9 count (2-4 digits; never 7).
_TEMPLATES = (
    "{0} {1} {2} {3}.",
    "In {5}, {0} {1} {2}.",
    "It turned out that {0} {1} {2} near {4}.",
    "When {0} {1} {2}, {6} {7} {8} {3}.",
    "The lesson is simple: {0} {1} {2} because {6} {7} {8}.",
    "{0} {1} {2} at {4}, and {6} {7} {8} {3}.",
    "Around {9} people {1} {2} {3} in {5}.",
    "Most of the time {0} {1} {2} without a real plan.",
    "What surprised {0} was how quickly {6} {7} {8}.",
    "If you ask {0} about {2}, you will hear that {6} {7} it {3}.",
    "Nobody at {4} remembers why {0} {1} {2}.",
    "By {5}, {0} had quietly {1} {2}, and {6} {7} {8}.",
    "There is a story that {0} {1} {2} for {9} days straight.",
    "I used to think {0} {1} {2} {3}, but {6} {7} {8}.",
)
_SUBJECTS = (
    "the founder", "a careful engineer", "the committee", "my neighbour", "the old library",
    "a young startup", "the market", "every investor", "the professor", "a stubborn painter",
    "the city council", "our first customer", "the night editor", "a retired sailor",
    "the smallest team", "the research group", "a patient teacher", "the local bakery",
    "my grandmother", "the mayor", "a quiet student", "the design office", "the orchestra",
    "a travelling salesman", "the village doctor", "the hiring manager", "a curious child",
    "the publisher", "the board", "an experienced pilot", "the farmer down the road",
)
_VERBS = (
    "noticed", "built", "questioned", "ignored", "measured", "repaired", "sold", "studied",
    "described", "abandoned", "copied", "tested", "painted", "borrowed", "improved",
    "criticised", "organised", "explained", "rebuilt", "praised", "delayed", "replaced",
    "discovered", "planned", "shared", "doubted", "finished", "admired", "simplified",
    "defended", "examined",
)
_OBJECTS = (
    "the quarterly report", "a small garden", "the first prototype", "the whole idea",
    "an unusual contract", "the morning schedule", "the broken bridge", "a new theory",
    "the annual budget", "the wooden boat", "an old map", "the hiring process",
    "the product roadmap", "a handwritten letter", "the public library", "the train timetable",
    "a simple recipe", "the weekly newsletter", "the sales forecast", "an empty warehouse",
    "the school curriculum", "a rare photograph", "the customer survey", "the marketing plan",
    "the city's water supply", "a forgotten manuscript", "the software license",
    "the museum exhibit", "a second opinion", "the long essay", "the tax form",
    "an ambitious proposal", "the spare parts", "the regional newspaper", "the garden fence",
)
_ADVERBIALS = (
    "with surprising patience", "before lunch", "without telling anyone", "almost by accident",
    "over a long weekend", "in complete silence", "for the third time", "with great care",
    "against all advice", "late at night", "in a hurry", "more slowly than expected",
    "after a long argument", "with the help of friends", "for no obvious reason",
    "during the winter", "as a kind of experiment", "while everyone watched",
    "on a tight budget", "with mixed results", "in the spring", "from memory",
    "under heavy pressure", "one piece at a time",
)
_PLACES = (
    "the harbour", "a quiet village", "the old factory", "the train station", "the university",
    "the town square", "a crowded cafe", "the county fair", "the north office",
    "the river bank", "a mountain cabin", "the central market", "the community hall",
    "the airport", "a small bookshop", "the courthouse", "the lighthouse", "the stadium",
)
_PARA_BREAK = 7  # about one sentence in this many ends a paragraph
_AVG_SENTENCE = 80  # rough average length incl. separator, used only to size the first batch

# Key words are disjoint from the filler banks, so "{adj}-{noun}" appears only in the needle.
_KEY_ADJECTIVES = (
    "amber", "brisk", "crimson", "dusty", "eager", "fragile", "gentle", "hollow", "icy",
    "jolly", "keen", "lofty", "mellow", "nimble", "opal", "plucky", "quaint", "rustic",
    "silent", "tangy", "urban", "vivid", "wary", "zesty", "cobalt", "velvet", "sturdy",
)
_KEY_NOUNS = (
    "lantern", "badger", "compass", "dolphin", "ember", "falcon", "glacier", "harp", "igloo",
    "jasmine", "kettle", "lagoon", "meadow", "nutmeg", "orchid", "pebble", "quartz", "raven",
    "saddle", "thistle", "umbrella", "violin", "walnut", "yarrow", "zephyr", "anvil", "bramble",
)
# fmt: on


def _sentences(rng: random.Random, k: int) -> list[str]:
    """``k`` filler sentences, each with its trailing separator (space or newline)."""
    c = rng.choices
    cols = (
        c(_SUBJECTS, k=k),
        c(_VERBS, k=k),
        c(_OBJECTS, k=k),
        c(_ADVERBIALS, k=k),
        c(_PLACES, k=k),
        [str(y) for y in c(range(1850, 2024), k=k)],
        c(_SUBJECTS, k=k),
        c(_VERBS, k=k),
        c(_OBJECTS, k=k),
        [str(n) for n in c(range(12, 9000), k=k)],
    )
    templates = c(_TEMPLATES, k=k)
    seps = c((" ", "\n"), weights=(_PARA_BREAK - 1, 1), k=k)
    out = []
    for t, sep, *slots in zip(templates, seps, *cols, strict=True):
        s = t.format(*slots)
        out.append(s[0].upper() + s[1:] + sep)
    return out


def filler(n_chars: int, rng: random.Random) -> list[str]:
    """Sentences (with separators) totalling at most ``n_chars`` and within one sentence of it."""
    pieces: list[str] = []
    total = 0
    while True:
        batch = _sentences(rng, max(16, (n_chars - total) // _AVG_SENTENCE + 16))
        ends = list(accumulate(len(p) for p in batch))
        cut = bisect_left(ends, n_chars - total + 1)  # pieces whose end stays <= budget
        pieces.extend(batch[:cut])
        total += ends[cut - 1] if cut else 0
        if cut < len(batch):
            return pieces


def make_key(rng: random.Random) -> str:
    """RULER-style word key such as ``"amber-lantern"``."""
    return f"{rng.choice(_KEY_ADJECTIVES)}-{rng.choice(_KEY_NOUNS)}"


def make_niah(n_chars: int, depth: float, seed: int) -> Task:
    """Haystack of about ``n_chars`` characters with one needle at ``depth`` (0.0 = start,
    1.0 = end), placed at the sentence boundary nearest to that fraction of the filler.

    The filler depends only on ``seed`` (and size), so a depth sweep reuses one haystack, as
    RULER does; key and value also depend on size and depth so answers differ across tasks.
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    needle_rng = random.Random(f"niah-needle:{seed}:{n_chars}:{float(depth)!r}")
    key = make_key(needle_rng)
    value = str(needle_rng.randint(1_000_000, 9_999_999))
    needle = NEEDLE.format(key=key, value=value)
    if n_chars < 4 * len(needle):
        raise ValueError(f"n_chars={n_chars} is too small for a haystack")

    pieces = filler(n_chars - len(needle) - 1, random.Random(f"niah-filler:{seed}"))
    starts = [0, *accumulate(len(p) for p in pieces)]
    target = depth * starts[-1]
    i = min(bisect_left(starts, target), len(pieces))
    if i > 0 and target - starts[i - 1] < starts[i] - target:
        i -= 1
    # Every piece ends with its separator, so inserting before piece i is a sentence boundary.
    pieces.insert(i, needle + ("\n" if i == len(pieces) else " "))
    offset = starts[i]
    context = "".join(pieces)
    return Task(
        task_id=f"niah-{n_chars}-d{round(depth * 100):03d}-s{seed}",
        kind="niah",
        context=context,
        question=QUESTION.format(key=key),
        gold=value,
        meta={
            "n_chars": n_chars,
            "depth": depth,
            "seed": seed,
            "key": key,
            "needle": needle,
            "needle_offset": offset,
            "actual_depth": offset / max(1, len(context) - len(needle)),
        },
    )
