"""``pipetune demo queries``: intent classification of search queries under real traffic.

The reference pipeline is the classic slow version of a small text classifier:

* ``normalize`` — lower-case, strip punctuation, collapse spaces (pure Python);
* ``featurize`` — hashed bag of words and word bigrams into a 4,096-wide vector (pure
  Python hashing, then numpy);
* ``classify`` — a one-hidden-layer network (4,096 → 1,024 → intents, float32 numpy),
  called one query at a time although it has a ``batch_fn`` doing a matrix product.

The workload: queries generated from templates for 8 intents (weather, music,
navigation, shopping, news, sports, cooking, finance) with slot values, then drawn from a
Zipf distribution (exponent 1.1) over the distinct queries, as search traffic is: a few
head queries come back constantly, a long tail appears once. Generator:
:func:`generate_queries`, seeded, no files. The classifier's hidden layer is a fixed random
projection and its output layer is fitted by ridge regression on a separate training draw,
so the labels are real predictions with real errors.

What the loop finds here is generic: a result cache (the head repeats) and dynamic
batching (the matrix product); both are validated like any other change.

Beside that teaching "before", :func:`competent_baseline` is what an engineer who knows
numpy ships without pipetune: the same pipeline served in batches of 32 through its
``batch_fn`` (no cache: whether one is worth its memory depends on the repeat rate, which
is what the loop measures). Benchmarks measure the loop's result against both.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.registry import DemoSetup
from pipetune.core.runtime.serving import with_serving

#: The competent baseline's batch size (queries per ``batch_fn`` call).
COMPETENT_BATCH = 32

INTENTS = {
    "weather": (
        "weather in {city}",
        "will it rain in {city} {when}",
        "{city} forecast {when}",
        "temperature {city} {when}",
    ),
    "music": (
        "play {artist}",
        "play songs by {artist}",
        "{artist} new album",
        "shuffle {artist} playlist",
    ),
    "navigation": (
        "directions to {place} in {city}",
        "how far is {place} {city}",
        "route to {place} avoiding tolls",
        "nearest {place}",
    ),
    "shopping": (
        "buy {product}",
        "cheap {product} deals",
        "{product} price comparison",
        "best {product} {when}",
    ),
    "news": (
        "latest news {topic}",
        "{topic} headlines {when}",
        "what happened in {city} {when}",
        "breaking {topic} news",
    ),
    "sports": (
        "{team} score",
        "{team} next game {when}",
        "{team} vs {team2} result",
        "{team} standings",
    ),
    "cooking": (
        "{dish} recipe",
        "how to cook {dish}",
        "easy {dish} {when}",
        "{dish} without oven",
    ),
    "finance": (
        "{ticker} stock price",
        "{ticker} earnings {when}",
        "should i buy {ticker}",
        "{ticker} dividend",
    ),
}
SLOTS = {
    "city": ("paris", "berlin", "tokyo", "lagos", "lima", "oslo", "austin", "pune", "porto"),
    "when": ("today", "tomorrow", "this weekend", "tonight", "next week", "now"),
    "artist": ("nina simone", "daft punk", "fela kuti", "bjork", "radiohead", "miles davis"),
    "place": ("pharmacy", "train station", "airport", "gas station", "museum", "hospital"),
    "product": ("running shoes", "laptop", "headphones", "coffee grinder", "desk chair"),
    "topic": ("climate", "elections", "technology", "science", "markets", "health"),
    "team": ("arsenal", "lakers", "yankees", "flamengo", "celtics", "bayern"),
    "team2": ("chelsea", "bulls", "red sox", "santos", "heat", "dortmund"),
    "dish": ("lasagna", "pad thai", "jollof rice", "ramen", "shakshuka", "risotto"),
    "ticker": ("aapl", "tsla", "nvda", "msft", "amzn", "brk"),
}
WIDTH = 4096
HIDDEN = 1024


def generate_queries(n: int, *, seed: int, distinct: int = 1500) -> tuple[list[str], list[str]]:
    """``n`` queries and their intents: ``distinct`` templated queries drawn Zipf(1.1)."""
    rng = random.Random(seed)
    pool: list[tuple[str, str]] = []
    seen: set[str] = set()
    intents = sorted(INTENTS)
    while len(pool) < distinct:
        intent = rng.choice(intents)
        template = rng.choice(INTENTS[intent])
        text = re.sub(r"\{(\w+)\}", lambda m: rng.choice(SLOTS[m.group(1)]), template)
        if rng.random() < 0.3:  # the way people type: capitals, punctuation, typos
            text = text.capitalize() + rng.choice(("?", "!", " ", "..", ""))
        if text not in seen:
            seen.add(text)
            pool.append((text, intent))
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(len(pool))]
    draws = rng.choices(range(len(pool)), weights=weights, k=n)
    return [pool[i][0] for i in draws], [pool[i][1] for i in draws]


_PUNCT = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _SPACES.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def _bucket(token: str) -> int:
    # FNV-1a, written out in Python as user code typically is (stable across processes).
    h = 2166136261
    for ch in token.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h % WIDTH


def featurize(text: str) -> np.ndarray:
    words = text.split()
    vector = np.zeros(WIDTH, dtype=np.float32)
    for token in words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]:
        vector[_bucket(token)] += 1.0
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def classify(features: np.ndarray, *, w1: np.ndarray, w2: np.ndarray, labels: tuple) -> str:
    hidden = np.maximum(features @ w1, 0.0)
    return labels[int(np.argmax(hidden @ w2))]


def classify_batch(
    items: Sequence[np.ndarray], *, w1: np.ndarray, w2: np.ndarray, labels: tuple
) -> list[str]:
    hidden = np.maximum(np.stack(items) @ w1, 0.0)
    return [labels[int(i)] for i in np.argmax(hidden @ w2, axis=1)]


def build_pipeline(seed: int = 0) -> Pipeline:
    """The reference pipeline, with its output layer fitted on a training draw."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((WIDTH, HIDDEN)) / np.sqrt(WIDTH)).astype(np.float32)
    labels = tuple(sorted(INTENTS))
    texts, intents = generate_queries(3000, seed=seed + 1000, distinct=3000)
    features = np.stack([featurize(normalize(t)) for t in texts])
    hidden = np.maximum(features @ w1, 0.0)
    targets = np.zeros((len(texts), len(labels)), dtype=np.float32)
    for row, intent in enumerate(intents):
        targets[row, labels.index(intent)] = 1.0
    ridge = hidden.T @ hidden + 1.0 * np.eye(HIDDEN, dtype=np.float32)
    w2 = np.linalg.solve(ridge, hidden.T @ targets).astype(np.float32)
    slots: dict[str, Any] = {"w1": w1, "w2": w2, "labels": labels}
    return Pipeline(
        "query-intent",
        (
            Stage("normalize", normalize, kind="preprocess"),
            Stage("featurize", featurize, kind="features"),
            Stage("classify", classify, kind="inference", slots=slots, batch_fn=classify_batch),
        ),
        output_kind="labels",
    )


def competent_baseline(pipeline: Pipeline | None = None) -> Pipeline:
    """The reference pipeline as a competent engineer serves it: batches of
    :data:`COMPETENT_BATCH` queries through the classifier's ``batch_fn``."""
    return with_serving(pipeline or build_pipeline(), batch_size=COMPETENT_BATCH)


def build(quick: bool = False) -> DemoSetup:
    n = 240 if quick else 2000
    texts, intents = generate_queries(n, seed=7)
    workload = Workload(
        items=tuple(texts),
        labels=tuple(intents),
        name="search-queries",
        warmup=1,
        repeats=1 if quick else 3,
    )
    return DemoSetup(
        pipeline=build_pipeline(),
        workload=workload,
        requirements=Requirements(max_accuracy_drop=0.01),
        description=(
            f"{n} search queries drawn Zipf(1.1) from 1,500 distinct templated queries over 8 "
            "intents; a hashed bag-of-words classifier with a 1,024-unit hidden layer, called "
            "one query at a time"
        ),
        notes={
            "generator": "pipetune.demos.generic.demo.generate_queries(seed=7)",
            "competent_baseline": (
                f"the same pipeline served in batches of {COMPETENT_BATCH} through its "
                "batch_fn: competent_baseline()"
            ),
        },
    )
