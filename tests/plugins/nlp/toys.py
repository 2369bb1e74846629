"""Small pure-Python tokenizers for tests: a faithful BERT-style WordPiece, and one whose
normalization differs from BERT's (it keeps accents), so a Rust rebuild must be rejected."""

from __future__ import annotations

import unicodedata


class ToyWordPiece:
    """A minimal BERT-style tokenizer: lower-case, strip accents, split on whitespace and
    punctuation, greedy longest-match WordPiece; ``encode`` adds [CLS] ... [SEP]."""

    strip_accents = True

    def __init__(self, vocab: dict[str, int]):
        self.vocab = dict(vocab)

    def _words(self, text: str) -> list[str]:
        text = text.lower()
        if self.strip_accents:
            text = "".join(
                c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
            )
        words, current = [], ""
        for char in text:
            if char.isspace():
                if current:
                    words.append(current)
                current = ""
            elif unicodedata.category(char).startswith("P") or char in "$+<=>^`|~":
                if current:
                    words.append(current)
                words.append(char)
                current = ""
            else:
                current += char
        if current:
            words.append(current)
        return words

    def tokenize(self, text: str) -> list[str]:
        pieces: list[str] = []
        for word in self._words(text):
            start, sub = 0, []
            while start < len(word):
                end = len(word)
                found = None
                while start < end:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        found = piece
                        break
                    end -= 1
                if found is None:
                    sub = ["[UNK]"]
                    break
                sub.append(found)
                start = end
            pieces.extend(sub)
        return pieces

    def encode(self, text: str) -> list[int]:
        ids = [self.vocab[p] for p in self.tokenize(text)]
        return [self.vocab["[CLS]"], *ids, self.vocab["[SEP]"]]


class AccentKeepingWordPiece(ToyWordPiece):
    """Same, but keeps accents: its ids differ from any BERT-normalized Rust tokenizer on
    accented words."""

    strip_accents = False
    do_lower_case = True
