"""What one piece of content says, without looking at anything else: the asking price in a listing's
text (pets have no price field: sellers write it), the scam phrases of a text (payment off the platform,
fees added after agreement, refusing a visit or video call, pressure), and 64-bit fingerprints for
near-duplicate matching (a SimHash of the words for copied text; photos are hashed by imagehash's
pHash in photos.py). Pure functions: the service and the offline evaluation share them."""
from __future__ import annotations

import hashlib
import re

import numpy as np
from collections.abc import Iterable

# "$450", "450 USD", "fee: 300", "€200", "rehoming fee of 150 dollars". Phone numbers and ages are not prices:
# a number counts only next to a currency sign or word, or after "price"/"fee".
_PRICE = re.compile(
    r"(?:[$€£]\s?(\d{1,6}(?:[.,]\d{3})*(?:\.\d{1,2})?))"
    r"|(?:(\d{1,6}(?:[.,]\d{3})*(?:\.\d{1,2})?)\s?(?:usd|eur|gbp|dollars?|euros?|bucks)\b)"
    r"|(?:(?:price|fee|cost|asking)\D{0,12}?(\d{1,6}(?:[.,]\d{3})*(?:\.\d{1,2})?)\b)",
    re.IGNORECASE)
_FREE = re.compile(r"\b(free to (?:a )?good home|for free|no fee)\b", re.IGNORECASE)

# The scam phrases, by signal. Kept as phrases rather than single words where a word alone is innocent
# ("shipping" alone is how honest people ask whether a pet can travel).
PHRASES: dict[str, tuple[str, ...]] = {
    "off_platform_payment": (
        r"gift ?cards?", r"itunes", r"google play card", r"steam card", r"amazon card", r"western union",
        r"moneygram", r"wire (?:transfer|the money|it)", r"bank transfer", r"bitcoin", r"\bbtc\b", r"crypto",
        r"usdt", r"ethereum", r"zelle", r"cash ?app", r"venmo", r"paypal (?:friends|f&f|family)",
        r"pay (?:me )?(?:directly|outside|off the (?:app|platform|site))", r"whats ?app me", r"text me at",
        r"email me at", r"send (?:the )?(?:money|payment|deposit) (?:to|via|through)",
    ),
    "fees_after_agreement": (
        r"shipping (?:fee|cost|charge)s? (?:of|is|are|will be)", r"(?:pay|send) (?:for |the )?(?:the )?shipping",
        r"crate (?:fee|cost|charge)", r"(?:pay|send) (?:for |the )?(?:a |the )?crate", r"insurance (?:fee|cost)",
        r"(?:pay|send) (?:for |the )?insurance", r"refundable (?:fee|deposit)", r"vaccination (?:fee|certificate fee)",
        r"customs (?:fee|clearance)", r"pet ?(?:transport|delivery) (?:agent|company) (?:requires|charges)",
        r"additional (?:fee|payment|charge)", r"extra (?:fee|charge) (?:for|of)",
    ),
    "refuses_visit": (
        r"no visits?", r"can(?:no|')t (?:do )?(?:a )?(?:visit|video ?call|facetime|meet)",
        r"(?:visits?|video ?calls?|meeting) (?:is|are) not (?:possible|allowed)",
        r"not available (?:to|for) (?:meet|visit)",
        r"i(?:'m| am) (?:away|abroad|overseas|on (?:a )?mission|deployed|offshore)", r"camera (?:is )?broken",
        r"only (?:delivery|shipping)", r"will (?:be )?deliver(?:ed)? to you",
    ),
    "pressure": (
        r"today only", r"right now", r"asap", r"(?:many|other) (?:people|buyers) (?:are )?interested",
        r"first (?:to pay|come)", r"deposit (?:now|today|to hold|to reserve)", r"hurry", r"urgent",
    ),
}
_COMPILED = {flag: re.compile("|".join(f"(?:{p})" for p in ps), re.IGNORECASE) for flag, ps in PHRASES.items()}
FLAGS = tuple(PHRASES)


def flags(text: str) -> dict[str, bool]:
    """Which scam phrases the text has."""
    return {flag: bool(pattern.search(text)) for flag, pattern in _COMPILED.items()}


def parse_price(text: str) -> float | None:
    """The asking price written in a listing (the smallest amount named: "was $900, now $300" asks 300),
    0 for "free to a good home", None when it names none."""
    amounts = []
    for m in _PRICE.finditer(text):
        raw = next(g for g in m.groups() if g)
        try:
            amounts.append(float(raw.replace(",", "")))
        except ValueError:
            continue
    if amounts:
        return min(amounts)
    return 0.0 if _FREE.search(text) else None


_WORD = re.compile(r"[a-z0-9']+")
MASK64 = (1 << 64) - 1


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def simhash(text: str) -> int | None:
    """Charikar's SimHash of the word 3-shingles: near-duplicate texts differ in few bits. None for texts
    too short to say anything (a short text is "copied" by chance)."""
    tokens = words(text)
    if len(tokens) < 12:
        return None
    shingles = {" ".join(tokens[i:i + 3]) for i in range(len(tokens) - 2)}
    digests = b"".join(hashlib.blake2b(s.encode(), digest_size=8).digest() for s in sorted(shingles))
    bits = np.unpackbits(np.frombuffer(digests, np.uint8).reshape(-1, 8), axis=1, bitorder="big")
    votes = bits.sum(axis=0) * 2 > len(shingles)  # bit 63 first
    return int.from_bytes(np.packbits(votes, bitorder="big").tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def bands(fingerprint: int, n: int) -> list[int]:
    """The fingerprint cut into n equal bands: two fingerprints within n - 1 bits share at least one band
    (pigeonhole), so a lookup by band finds every near duplicate without scanning them all."""
    width = 64 // n
    return [fingerprint >> (i * width) & ((1 << width) - 1) for i in range(n)]


def to_signed(fingerprint: int) -> int:
    """A 64-bit fingerprint as a signed BIGINT (SQL has no unsigned 64-bit integer)."""
    return fingerprint - (1 << 64) if fingerprint >= 1 << 63 else fingerprint


def from_signed(value: int) -> int:
    return value & MASK64


def near(fingerprint: int, others: Iterable[int], within: int) -> int:
    """How many of `others` are within `within` bits of the fingerprint."""
    return sum(1 for o in others if hamming(fingerprint, o) <= within)


class NearIndex:
    """Fingerprints by band, in memory (the offline evaluation; the service keeps the same bands in SQL):
    who has a fingerprint within `within` bits of a given one. Exact for within < n_bands."""

    def __init__(self, *, n_bands: int, within: int):
        assert within < n_bands
        self.n_bands, self.within = n_bands, within
        self._by_band: dict[tuple[int, int], list[tuple[str, int]]] = {}

    def add(self, owner: str, fingerprint: int) -> None:
        for i, b in enumerate(bands(fingerprint, self.n_bands)):
            self._by_band.setdefault((i, b), []).append((owner, fingerprint))

    def others_near(self, owner: str, fingerprint: int) -> bool:
        """Whether another owner has a fingerprint near this one."""
        for i, b in enumerate(bands(fingerprint, self.n_bands)):
            for o, f in self._by_band.get((i, b), ()):
                if o != owner and hamming(f, fingerprint) <= self.within:
                    return True
        return False


# Photos: pHash of a re-encoded or resized copy is a few bits off; texts: a SimHash within 3 bits.
PHOTO_BANDS, PHOTO_WITHIN = 8, 6
TEXT_BANDS, TEXT_WITHIN = 4, 3
