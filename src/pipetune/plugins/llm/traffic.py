"""Request streams for the llm demo, benchmarks and tests.

Every request is a plain JSON-able dict (so a workload can also come from a JSONL file)::

    {"id": "edit-3", "kind": "edit", "system": "...", "prompt": "...", "max_new_tokens": 160}

Kinds and how long their outputs may run (``max_new_tokens`` budgets, drawn per request;
the model stops earlier at its end-of-turn token, and the profile reports the *measured*
output lengths):

=============  =====================================================  ==================
kind           what the user asks                                     output budget
=============  =====================================================  ==================
``chat``       a short question to a support assistant that shares     16-48 tokens
               one long system prompt with every other chat request    (uniform)
``extract``    list the names / dates / figures in a document          24-64 (uniform)
``summarize``  summarize a document in two sentences                   48-96 (uniform)
``edit``       correct the spelling in a document (typos injected      the document's
               deterministically): the answer copies the input         length + 16
``story``      open-ended writing (a story, an explanation, ideas)     96-256 (uniform)
=============  =====================================================  ==================

Prompt lengths follow from the documents (60-170 words each, a dozen topics) and the
shared system prompt (about 70 tokens with SmolLM2's tokenizer). Three streams:

* :func:`mixed_stream`: all five kinds (chat 30 %, extract 20 %, summarize 15 %, edit
  15 %, story 20 %) — the mixed-length stream of the continuous-batching benchmark: most
  requests are short, a fifth run to a few hundred tokens.
* :func:`grounded_stream`: edit, extract and summarize only — the outputs copy their
  prompts, where prompt-lookup speculation pays.
* :func:`open_stream`: chat and story only — the outputs do not copy their prompts.
* :func:`story_stream`: long open-ended writing only (where a small greedy model repeats
  itself).

Arrivals (:func:`poisson_arrivals`) are an open-loop Poisson process at a given rate.
All generators are deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

SYSTEM_PROMPT = (
    "You are the support assistant of Northwind Outdoor Gear, an online shop for hiking, "
    "camping and climbing equipment. Answer customers politely and briefly. Orders ship "
    "within two business days; returns are free within 30 days if the item is unused. "
    "Never invent order numbers or prices. If you do not know, say so and offer to "
    "connect the customer with a human agent."
)

GROUNDED_SYSTEM = "You are a careful assistant that works only from the text it is given."

DOCUMENTS: tuple[str, ...] = (
    "The quarterly planning meeting took place on March 4 in the Lisbon office. Maria "
    "Santos opened by reviewing the sales figures: revenue grew by 12 percent, driven "
    "mostly by the new line of lightweight tents. Tom Becker raised concerns about "
    "delivery delays in northern Germany, where the regional carrier missed its targets "
    "twice in February. The team agreed to test a second carrier for six weeks. Aiko "
    "Tanaka will prepare the comparison and present it on April 15.",
    "I bought the TrailMaster 45 backpack for a five day trek in the Pyrenees. The hip "
    "belt is well padded and the frame carried twelve kilograms without any pain in my "
    "shoulders. The rain cover, however, is too small once the side pockets are full, and "
    "water got into the top lid during a storm. The zippers feel solid. For the price I "
    "would buy it again, but I would add a separate dry bag for my sleeping bag.",
    "A magnitude 5.1 earthquake struck the coast of northern Chile early on Tuesday "
    "morning, the national seismology center said. The quake was centered 40 kilometers "
    "west of Antofagasta at a depth of 35 kilometers. Local authorities reported minor "
    "damage to older buildings but no injuries. Schools in the region opened two hours "
    "late while engineers inspected them. A tsunami warning was not issued.",
    "Hello, my order 48213 arrived yesterday but the stove was missing from the box. "
    "The packing list says it should contain the tent, two sleeping mats and the compact "
    "gas stove. I have attached a photo of the contents. I need the stove before Friday "
    "because we leave for a camping trip on Saturday morning. Can you send it by express "
    "delivery, or should I return the whole order? Thanks, Daniel Okafor.",
    "To make the lentil soup, rinse two cups of red lentils and chop one onion, two "
    "carrots and three cloves of garlic. Warm olive oil in a large pot and cook the onion "
    "until soft, then add the carrots, garlic, one teaspoon of cumin and half a teaspoon "
    "of paprika. Add the lentils and six cups of vegetable stock. Simmer for twenty five "
    "minutes, stir in the juice of one lemon and season with salt and pepper.",
    "Day one: arrive in Kyoto by train from Tokyo and check in at the guesthouse near "
    "Gion. In the evening, walk along the Kamo river. Day two: visit the Fushimi Inari "
    "shrine early to avoid the crowds, then spend the afternoon in the Nishiki market. "
    "Day three: take the train to Nara, see the deer park and the Todaiji temple, and "
    "return to Kyoto for dinner. Day four: leave for Osaka after breakfast.",
    "At 02:14 UTC the payment service began returning errors for about 30 percent of "
    "requests. The on-call engineer, Priya Raman, traced the problem to a database "
    "connection pool that had been reduced from 200 to 20 connections by a configuration "
    "change deployed the previous evening. The change was rolled back at 02:51 UTC and "
    "the error rate returned to normal by 02:58 UTC. No payments were lost.",
    "We study how the length of a hiking trail affects how often it is used. Using "
    "anonymous location data from 3,200 hikers across 140 trails in Norway, we find that "
    "trails between 8 and 12 kilometers are used most often, while trails longer than 20 "
    "kilometers see a sharp drop in use. Trail difficulty matters less than expected. "
    "We discuss what this means for how park services plan new routes.",
    "Starting June 1, all employees may work from home up to three days a week. Teams "
    "must agree on at least one shared office day, and managers will review the "
    "arrangement every six months. Employees who need special equipment at home can "
    "request a budget of up to 400 euros from the facilities team. Questions about the "
    "policy should go to Helen Moreau in human resources.",
    "The municipal library will close its main building from July 10 to August 21 for "
    "renovation of the heating system. During this time, a temporary branch will open in "
    "the community center on Baker Street, with a smaller collection and shorter opening "
    "hours. Books borrowed before the closure can be returned at any branch. The "
    "children's reading club will continue every Wednesday afternoon at the new location.",
    "Dear Ms. Lindqvist, thank you for your application for the position of warehouse "
    "coordinator. We were impressed by your experience with inventory systems and would "
    "like to invite you to an interview on Thursday, May 22, at 10:00 in our Malmo "
    "office. The interview will last about one hour and includes a short tour of the "
    "warehouse. Please confirm by replying to this email. Kind regards, Jonas Berg.",
    "The new firmware for the Summit GPS watch improves battery life in tracking mode from "
    "18 to 26 hours and adds offline maps for the Alps and the Rocky Mountains. Users "
    "reported that the update takes about fifteen minutes and must be installed while the "
    "watch is charging. After the update, the altimeter needs to be calibrated again. "
    "Version 3.2 also fixes a bug that reset the step counter at midnight.",
)

CHAT_QUESTIONS: tuple[str, ...] = (
    "How long does shipping take?",
    "Can I return a tent I already used once?",
    "Do you ship to Canada?",
    "What is your return policy for sleeping bags?",
    "My package says delivered but I cannot find it. What should I do?",
    "Can I change the delivery address after ordering?",
    "Do you offer gift cards?",
    "Which stove would you recommend for winter camping?",
    "Is the TrailMaster 45 backpack waterproof?",
    "How do I clean a down jacket?",
)

OPEN_TASKS: tuple[str, ...] = (
    "Write a short story about a fox who learns to climb mountains.",
    "Explain to a ten year old why the sky is blue.",
    "Give me ten ideas for a weekend trip with children.",
    "Write a poem about rain in the city.",
    "Describe what life might be like on a space station in the year 2200.",
    "Explain how a compass works and why it points north.",
    "Write a letter from a lighthouse keeper to his sister.",
    "Invent a new board game and explain its rules.",
)

MIX: Mapping[str, float] = {
    "chat": 0.3,
    "extract": 0.2,
    "summarize": 0.15,
    "edit": 0.15,
    "story": 0.2,
}


def add_typos(text: str, rng: random.Random, rate: float = 0.08) -> str:
    """Swap two letters in about ``rate`` of the words (deterministic for ``rng``)."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) > 4 and word.isalpha() and rng.random() < rate:
            j = rng.randrange(1, len(word) - 2)
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


def make_request(kind: str, rng: random.Random, index: int) -> dict[str, Any]:
    """One request of ``kind`` (see the module docstring for the budgets)."""
    doc = rng.choice(DOCUMENTS)
    words = len(doc.split())
    if kind == "chat":
        system, prompt = SYSTEM_PROMPT, rng.choice(CHAT_QUESTIONS)
        budget = rng.randint(16, 48)
    elif kind == "extract":
        system = GROUNDED_SYSTEM
        what = rng.choice(["names of people", "dates and times", "numbers and quantities"])
        prompt = f"List all the {what} mentioned in the text below, one per line.\n\n{doc}"
        budget = rng.randint(24, 64)
    elif kind == "summarize":
        system = GROUNDED_SYSTEM
        prompt = f"Summarize the following text in two sentences.\n\n{doc}"
        budget = rng.randint(48, 96)
    elif kind == "edit":
        system = GROUNDED_SYSTEM
        prompt = (
            "Correct the spelling mistakes in the following text. Reply with the corrected "
            f"text only.\n\n{add_typos(doc, rng)}"
        )
        budget = int(words * 1.4) + 16  # ~1.3 tokens per word, plus slack
    elif kind == "story":
        system, prompt = SYSTEM_PROMPT, rng.choice(OPEN_TASKS)
        budget = rng.randint(96, 256)
    else:
        raise ValueError(f"unknown request kind {kind!r}")
    return {
        "id": f"{kind}-{index}",
        "kind": kind,
        "system": system,
        "prompt": prompt,
        "max_new_tokens": budget,
    }


def stream(
    n: int, mix: Mapping[str, float], seed: int = 0, max_new_cap: int | None = None
) -> list[dict[str, Any]]:
    """``n`` requests drawn from ``mix`` (kind -> probability)."""
    rng = random.Random(seed)
    kinds, weights = zip(*mix.items(), strict=True)
    out = []
    for i in range(n):
        request = make_request(rng.choices(kinds, weights)[0], rng, i)
        if max_new_cap is not None:
            request["max_new_tokens"] = min(request["max_new_tokens"], max_new_cap)
        out.append(request)
    return out


def mixed_stream(
    n: int = 48, seed: int = 0, max_new_cap: int | None = None
) -> list[dict[str, Any]]:
    return stream(n, MIX, seed, max_new_cap)


def grounded_stream(
    n: int = 16, seed: int = 1, max_new_cap: int | None = None
) -> list[dict[str, Any]]:
    return stream(n, {"edit": 0.5, "extract": 0.25, "summarize": 0.25}, seed, max_new_cap)


def open_stream(n: int = 16, seed: int = 2, max_new_cap: int | None = None) -> list[dict[str, Any]]:
    return stream(n, {"chat": 0.4, "story": 0.6}, seed, max_new_cap)


def story_stream(n: int = 8, seed: int = 4, max_new_cap: int | None = None) -> list[dict[str, Any]]:
    """Long open-ended writing only. A small model decoding greedily tends to fall into
    repetition loops here, which prompt lookup over its own output exploits."""
    return stream(n, {"story": 1.0}, seed, max_new_cap)


def poisson_arrivals(n: int, rate: float, seed: int = 0) -> list[float]:
    """Arrival offsets (seconds) of an open-loop Poisson process at ``rate`` per second."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


def describe(requests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts per kind and the output-budget distribution of a stream."""
    kinds: dict[str, int] = {}
    for r in requests:
        kinds[r.get("kind", "?")] = kinds.get(r.get("kind", "?"), 0) + 1
    budgets = sorted(int(r.get("max_new_tokens") or 0) for r in requests)
    if not budgets:
        return {"requests": 0}
    return {
        "requests": len(requests),
        "kinds": kinds,
        "max_new_tokens": {
            "min": budgets[0],
            "p50": budgets[len(budgets) // 2],
            "max": budgets[-1],
            "mean": sum(budgets) / len(budgets),
        },
    }
