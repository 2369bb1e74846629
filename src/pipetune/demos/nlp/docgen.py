"""The document stream behind the headline demo: generated, labelled business documents.

What a document-processing system at a mid-sized company receives: letters and e-mails to a
shared inbox, each made of *sections* separated by blank lines: a letterhead, one or more
body sections (the first headed by the subject line), sometimes a block of standard terms,
and a footer (a signature block and/or a legal disclaimer). The pipeline classifies each
document into one of six case types.

How the text is made (everything is deterministic from the seed):

* **Vocabulary.** Hand-written sentence templates per class (``docgen_text.CLASS_TEMPLATES``: 22 per
  class, each with inline alternatives ``[a|b|c]``) over everyday business English, filled
  with generated entities (people from several scripts, organizations, amounts, dates,
  account and ticket ids, products, systems). 44 neutral "filler" sentences are shared by
  all classes. All words are ordinary English; MiniLM's WordPiece vocabulary covers them.
* **Class structure.** Six classes in three confusable pairs that share vocabulary:
  billing dispute / purchase order (money, invoices, vendors), service outage / security
  incident (systems, access, logs), contract renewal / employee relations (agreements,
  terms, policy). Each body sentence is drawn from the document's own class with
  probability 0.50, from its confusable twin with 0.15, from another class with 0.08, and
  is neutral filler otherwise. So no single sentence decides the class and the evidence
  is spread through the whole body.
* **Where the signal is.** Only in body sections and, for 30 % of documents, in the subject
  line (which heads the first body section). Class sentences sit at uniformly random
  positions in each body section, so a section truncated at L tokens loses the evidence in
  its tail. Letterheads, signature
  blocks, standard terms and disclaimers carry none.
* **Recurrence.** Letterheads (one per organization and department), signature blocks (one
  per sender), six standard-terms blocks and six disclaimers recur across documents, as in
  a real stream. Documents are also re-submitted: a case is revised 0-5 times (an edited
  section, an appended update), and every revision is re-processed whole.
* **Lengths.** Body sections have a log-normal number of sentences (median 3.9): median
  67 tokens, p90 155, p99 330, about 3 % over 256 tokens; 1-7 body sections per document;
  standard-terms blocks run to 150-330 tokens; 5.1 sections per document on average.
  Documents range from about 40 to 1,000 tokens (median 350).
* **Messy input.** 8 % of people have names in other scripts (Cyrillic, Chinese, Arabic,
  Vietnamese, Nordic), and some product-feedback style sentences carry emoji.
* **Labels.** The generator's class for every document. Training labels for the demo's
  classifier head get 2 % label noise, as human labels do.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from pipetune.demos.nlp import docgen_text as words

CLASSES: tuple[str, ...] = (
    "billing_dispute",
    "purchase_order",
    "service_outage",
    "security_incident",
    "contract_renewal",
    "employee_relations",
)

#: Each class shares vocabulary with its twin.
CONFUSABLE: dict[str, str] = {
    "billing_dispute": "purchase_order",
    "purchase_order": "billing_dispute",
    "service_outage": "security_incident",
    "security_incident": "service_outage",
    "contract_renewal": "employee_relations",
    "employee_relations": "contract_renewal",
}

#: Sentence mix of a body section: own class, confusable twin, another class, filler.
P_OWN, P_TWIN, P_OTHER = 0.50, 0.15, 0.08


@dataclass(frozen=True)
class Document:
    """One document of the stream, with its ground truth.

    ``text`` is what the pipeline receives: sections separated by blank lines.
    ``case`` identifies the case a revision belongs to; ``revision`` counts from 0.
    """

    text: str
    label: str
    case: int
    revision: int
    sections: tuple[str, ...] = field(repr=False, default=())


@dataclass(frozen=True)
class StreamSpec:
    """The knobs of a generated stream."""

    cases: int = 100
    max_revisions: int = 5
    p_revise: float = 0.6  # chance that a case gets one more revision
    seed: int = 0


class _Generator:
    """Fills templates from a seeded random source. One per stream."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        # The pools that recur across documents are fixed by a seed of their own, so the
        # training stream and the demo workload share letterheads, senders and
        # disclaimers, as two months of the same inbox would.
        pools = random.Random(1234)
        self.senders = [self._make_sender(pools) for _ in range(42)]
        self.terms_blocks = [self._terms_block(pools) for _ in range(6)]

    # -- entities ----------------------------------------------------------------------
    def person(self, rng: random.Random | None = None) -> str:
        rng = rng or self.rng
        if rng.random() < 0.08:
            return rng.choice(words.INTERNATIONAL_NAMES)
        return f"{rng.choice(words.FIRST)} {rng.choice(words.LAST)}"

    def _make_sender(self, rng: random.Random) -> tuple[str, str, str]:
        org = rng.choice(words.ORGS)
        dept = rng.choice(words.DEPARTMENTS)
        name = self.person(rng)
        signature = f"Kind regards,\n{name}\n{rng.choice(words.TITLES)}\n{org}"
        if rng.random() < 0.5:
            phone = f"+{rng.randint(30, 49)} {rng.randint(100, 999)} {rng.randint(100000, 999999)}"
            signature += f"\nPhone: {phone}"
        letterhead = (
            f"{org}\n{dept}\n{rng.randint(1, 200)} {rng.choice(words.STREETS)}, "
            f"{rng.choice(words.CITIES)}"
        )
        return letterhead, signature, org

    def _terms_block(self, rng: random.Random) -> str:
        clauses = rng.sample(words.TERMS_CLAUSES, rng.randint(6, 12))
        return "General terms and conditions. " + " ".join(
            f"({i}) {clause}" for i, clause in enumerate(clauses, start=1)
        )

    def fill(self, template: str) -> str:
        rng = self.rng
        # Inline alternatives first: "[a|b|c]".
        text = re.sub(r"\[([^\]]+)\]", lambda m: rng.choice(m.group(1).split("|")), template)
        values = {
            "id": lambda: (
                f"{rng.choice('ABCDEFGHKMPRSTX')}{rng.choice('ABCDEFGHKMPRSTX')}-"
                f"{rng.randint(10000, 999999)}"
            ),
            "date": self._date,
            "date2": self._date,
            "amount": self._amount,
            "amount2": self._amount,
            "n": lambda: str(rng.choice((2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 40, 50, 120))),
            "n2": lambda: str(rng.choice((60, 80, 150, 200, 250, 400))),
            "pct": lambda: rng.choice(("99.5", "99.9", "99.95")),
            "month": lambda: rng.choice(words.MONTHS),
            "time": lambda: f"{rng.randint(0, 23):02d}:{rng.choice((0, 15, 30, 45)):02d}",
            "person": self.person,
            "org": lambda: rng.choice(words.ORGS),
            "city": lambda: rng.choice(words.CITIES),
            "product": lambda: rng.choice(words.PRODUCTS),
            "system": lambda: rng.choice(words.SYSTEMS),
            "region": lambda: rng.choice(words.REGIONS),
            "team": lambda: rng.choice(words.TEAMS),
        }
        return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)](), text)

    def _date(self) -> str:
        rng = self.rng
        day, month = rng.randint(1, 28), rng.randint(1, 12)
        style = rng.random()
        if style < 0.4:
            return f"{day} {words.MONTHS[month - 1]} 2024"
        if style < 0.7:
            return f"2024-{month:02d}-{day:02d}"
        return f"{day:02d}.{month:02d}.2024"

    def _amount(self) -> str:
        rng = self.rng
        value = round(math.exp(rng.uniform(math.log(20), math.log(250_000))), 2)
        return rng.choice(("EUR {:,.2f}", "${:,.2f}", "{:,.2f} USD", "£{:,.2f}")).format(value)

    # -- sections ----------------------------------------------------------------------
    def sentence(self, label: str) -> str:
        draw = self.rng.random()
        if draw < P_OWN:
            pool = words.CLASS_TEMPLATES[label]
        elif draw < P_OWN + P_TWIN:
            pool = words.CLASS_TEMPLATES[CONFUSABLE[label]]
        elif draw < P_OWN + P_TWIN + P_OTHER:
            others = [c for c in CLASSES if c not in (label, CONFUSABLE[label])]
            pool = words.CLASS_TEMPLATES[self.rng.choice(others)]
        else:
            pool = words.FILLER
        return self.fill(self.rng.choice(pool))

    def body_section(self, label: str) -> str:
        # Log-normal sentence count: median ~3.9, a long tail of long sections.
        count = round(math.exp(self.rng.gauss(1.35, 0.72)))
        count = max(1, min(count, 30))
        return " ".join(self.sentence(label) for _ in range(count))

    def subject(self, label: str) -> str:
        if self.rng.random() < 0.3:
            return "Subject: " + self.fill(self.rng.choice(words.SUBJECTS[label]))
        return "Subject: " + self.fill(self.rng.choice(words.NEUTRAL_SUBJECTS))

    def update_section(self, label: str) -> str:
        return f"Update {self._date()}: " + self.body_section(label)

    # -- documents ---------------------------------------------------------------------
    def case(self, label: str) -> dict[str, object]:
        rng = self.rng
        letterhead, signature, _org = rng.choice(self.senders)
        bodies = [self.body_section(label) for _ in range(_body_count(rng))]
        return {
            "letterhead": letterhead,
            "subject": self.subject(label),
            "bodies": bodies,
            "signature": signature if rng.random() < 0.75 else None,
            "terms": rng.choice(self.terms_blocks) if rng.random() < 0.3 else None,
            "disclaimer": rng.choice(words.DISCLAIMERS) if rng.random() < 0.7 else None,
        }

    def revise(self, parts: dict[str, object], label: str) -> dict[str, object]:
        """A re-submission: one body section rewritten, or an update appended."""
        bodies = list(cast("list[str]", parts["bodies"]))
        if self.rng.random() < 0.5:
            bodies[self.rng.randrange(len(bodies))] = self.body_section(label)
        else:
            bodies.append(self.update_section(label))
        return {**parts, "bodies": bodies}


def _body_count(rng: random.Random) -> int:
    # 1-7 body sections, mostly 2-3.
    return min(7, 1 + int(rng.expovariate(1 / 1.6)))


def _assemble(parts: dict[str, object]) -> tuple[str, ...]:
    # The subject line heads the first body section, and a signature and a disclaimer
    # that follow each other form one footer block, as they do in e-mails.
    bodies = [str(b) for b in cast("list[str]", parts["bodies"])]
    bodies[0] = f"{parts['subject']}\n{bodies[0]}"
    footer = "\n".join(str(parts[k]) for k in ("signature", "disclaimer") if parts[k])
    sections = [str(parts["letterhead"]), *bodies]
    if parts["terms"]:
        sections.append(str(parts["terms"]))
    if footer:
        sections.append(footer)
    return tuple(sections)


def generate_stream(spec: StreamSpec) -> list[Document]:
    """A stream of documents: ``spec.cases`` cases, each submitted, then revised a few
    times; revisions arrive later than their predecessors, interleaved with other cases."""
    gen = _Generator(spec.seed)
    rng = gen.rng
    events: list[tuple[float, Document]] = []
    for case in range(spec.cases):
        label = CLASSES[rng.randrange(len(CLASSES))]
        parts = gen.case(label)
        when = rng.random()
        revision = 0
        while True:
            sections = _assemble(parts)
            events.append((when, Document("\n\n".join(sections), label, case, revision, sections)))
            if revision >= spec.max_revisions or rng.random() > spec.p_revise:
                break
            parts = gen.revise(parts, label)
            revision += 1
            when += rng.expovariate(8.0)
    events.sort(key=lambda event: event[0])
    return [document for _, document in events]


def generate_documents(count: int, seed: int) -> list[Document]:
    """``count`` independent documents (no revisions), e.g. to train a classifier."""
    return generate_stream(StreamSpec(cases=count, max_revisions=0, seed=seed))[:count]


def noisy_labels(labels: Sequence[str], rate: float, seed: int) -> list[str]:
    """Labels with ``rate`` of them replaced by a random other class (human label noise)."""
    rng = random.Random(seed)
    out = []
    for label in labels:
        if rng.random() < rate:
            label = rng.choice([c for c in CLASSES if c != label])
        out.append(label)
    return out


def split_sections(text: str) -> tuple[str, ...]:
    """Sections of a document: blocks separated by blank lines."""
    parts = [part.strip() for part in re.split(r"\n[ \t]*\n", text)]
    return tuple(part for part in parts if part)
