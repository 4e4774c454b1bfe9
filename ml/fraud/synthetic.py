"""A seeded population of honest and scam accounts, their listings (price written in the text, photos as
64-bit perceptual hashes) and chat messages, for the offline evaluation.

Honest accounts: most sell or rehome one to three pets at prices around the typical one for the species
(log-normal spread), or only write to sellers; their look-alikes of scams (rate `lookalikes`): cheap rescue
adoptions ("adoption fee $60"), free-to-a-good-home pets, a photo genuinely shared with another honest
account (a rescue's volunteers cross-posting), innocent questions about shipping or the crate, "I'm away
this week" before a visit, posting on the day they sign up.

Scam accounts use the tactics of the fraud signals, each with a probability (`subtle` of them are careful:
fewer tactics, older accounts, fees and payment asked in words no phrase list has): prices far below the
typical, photos stolen from earlier honest listings (re-encoded: a few bits of the hash flip), listing text
copied from the scam ring's templates, payment off the platform, fees after agreement, no visits or video
calls, pressure, many listings soon after sign-up, and earlier upheld reports.

Labels are what moderators would have decided: scam accounts upheld, honest ones dismissed, with a
share `label_noise` of scams missed (labelled honest)."""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
TYPICAL = {1: 600.0, 2: 250.0, 3: 80.0, 4: 150.0}  # the generator's true typical prices by species
BREEDS = {1: ["labrador", "french bulldog", "yorkshire terrier", "poodle", "mixed"],
          2: ["maine coon", "siamese", "ragdoll", "domestic shorthair"], 3: ["lop", "dwarf"], 4: ["parrot", "budgie"]}
NAMES = ["Bella", "Max", "Luna", "Charlie", "Daisy", "Milo", "Coco", "Rocky", "Nala", "Teddy", "Lola", "Oscar"]
HONEST_WORDS = (
    "friendly playful calm gentle loves walks cuddles house trained crate trained vaccinated microchipped neutered "
    "spayed good with kids cats dogs garden apartment energetic shy at first sweet curious healthy vet checked "
    "eats well sleeps through the night knows sit stay leash trained moving abroad allergies new baby landlord "
    "looking for a loving forever home experienced owner preferred meet and greet welcome references asked"
).split()
HONEST_MESSAGES = [
    "Hi, is {name} still available?", "Could I come and meet {name} on Saturday?", "Does {name} get on with cats?",
    "How old is {name} exactly?", "Has {name} had all the vaccinations?", "We have a garden and two kids, is that ok?",
    "Thank you! See you at 3pm then.", "Can I bring my partner to the visit?", "What food does {name} eat?",
]
INNOCENT = [  # honest look-alikes of scam phrases
    "Can you ship to Denver or should I pick up?", "Is the crate included or should I bring one?",
    "I'm away this week, can we do a video call next week instead?", "I can pay the adoption fee in cash at pickup.",
    "Is shipping even safe for a puppy? I'd rather drive.", "Many people interested? Then I'll hurry to visit!",
]
SCAM_PHRASES = {
    "off_platform_payment": ["Please pay with a gift card, Amazon or iTunes.", "Payment by Western Union only.",
                             "Send the deposit via Zelle to hold {name}.", "I accept bitcoin or USDT only.",
                             "Pay me directly, not through the app, it is cheaper.", "Cash App me the money today."],
    "fees_after_agreement": ["The shipping fee is $250, refundable on delivery.",
                             "You need to pay for the crate, $120.",
                             "The pet transport company charges insurance fee of $300.",
                             "There is an additional fee for vaccination certificate."],
    "refuses_visit": ["No visits, I am on a mission abroad.", "I can't do a video call, my camera is broken.",
                      "Only delivery, {name} will be delivered to you."],
    "pressure": ["Many people are interested, first to pay gets {name}.", "Deposit today to reserve, hurry.",
                 "This is urgent, I need an answer right now."],
}
SUBTLE_PHRASES = ["You can send the money through the agent, he handles everything.",  # no phrase list has these
                  "The courier needs a small extra for the box and papers.",
                  "I will be away for months, my agent will deliver."]
RING_TEMPLATES = [
    "Adorable {breed} puppy {name} ready for a new home, vet checked with papers, comes with toys blanket and food, "
    "very playful and good with kids, we are relocating and need to rehome fast, price {price} dollars",
    "Beautiful {breed} {name} looking for a loving family, fully vaccinated and dewormed, health guarantee included, "
    "delivery available to any state, price {price} dollars, contact me for more details and pictures",
    "Home raised {breed} baby {name}, potty trained and microchipped, we lost our job and must find a family this "
    "week, price {price} dollars including all documents and a travel crate",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Setting:
    name: str
    seed: int
    honest: int = 2000
    scammers: int = 200
    days: int = 240
    subtle: float = 0.2  # share of careful scammers
    lookalikes: float = 0.1  # how often an honest account does each scam-like thing
    tactic: float = 0.7  # probability of each tactic for a scammer who is not careful
    label_noise: float = 0.05


@dataclasses.dataclass(frozen=True, kw_only=True)
class Listing:
    create_time: dt.datetime
    species: int
    breed: str
    text: str
    photos: tuple[int, ...]


@dataclasses.dataclass(kw_only=True)
class Account:
    index: int
    scam: bool
    label: int  # what moderators decided: 1 upheld, 0 dismissed
    create_time: dt.datetime
    listings: list[Listing]
    messages: list[tuple[dt.datetime, str]]
    upheld_reports: int


def _flip(rng: np.random.Generator, h: int, max_bits: int) -> int:
    for bit in rng.choice(64, size=int(rng.integers(0, max_bits + 1)), replace=False):
        h ^= 1 << int(bit)
    return h


def _honest_text(rng: np.random.Generator, name: str, breed: str, price_text: str) -> str:
    words = " ".join(rng.choice(HONEST_WORDS, size=int(rng.integers(18, 40))))
    return f"{name} the {breed}: {words}. {price_text}"


def generate(setting: Setting) -> list[Account]:
    rng = np.random.default_rng(setting.seed)
    total = setting.honest + setting.scammers
    scam = np.zeros(total, bool)
    scam[rng.choice(total, size=setting.scammers, replace=False)] = True
    created = [START + dt.timedelta(days=float(d)) for d in rng.uniform(0, setting.days, total)]
    accounts: list[Account] = []
    posted: list[tuple[dt.datetime, int]] = []  # honest photos, for look-alike sharing and for thieves
    lk = setting.lookalikes
    # Honest accounts first, so thieves can find photos posted before their own listings.
    for i in np.flatnonzero(~scam).tolist() + np.flatnonzero(scam).tolist():
        c = created[i]
        listings, messages = [], []
        if not scam[i]:
            sells = rng.random() < 0.6
            for _ in range(int(rng.integers(1, 4)) if sells else 0):
                species = int(rng.choice(list(TYPICAL), p=[0.5, 0.3, 0.1, 0.1]))
                breed = str(rng.choice(BREEDS[species]))
                name = str(rng.choice(NAMES))
                early = rng.random() < 0.3  # lists on sign-up day
                t = c + dt.timedelta(hours=float(rng.uniform(0, 20))) if early else c + dt.timedelta(
                    days=float(rng.exponential(20)))
                r = rng.random()
                if r < lk:
                    price_text = f"Rescue, adoption fee ${int(rng.uniform(40, 150))}."
                elif r < lk * 1.4:
                    price_text = "Free to a good home."
                elif r < 0.85:
                    price_text = f"Rehoming fee ${int(TYPICAL[species] * rng.lognormal(0, 0.35))}."
                else:
                    price_text = ""
                photos = [int(rng.integers(0, 2**63)) for _ in range(int(rng.integers(1, 5)))]
                if posted and rng.random() < lk:
                    photos[0] = _flip(rng, posted[int(rng.integers(len(posted)))][1], 2)  # cross-posted
                posted.extend((t, p) for p in photos)
                listings.append(Listing(create_time=t, species=species, breed=breed,
                                        text=_honest_text(rng, name, breed, price_text), photos=tuple(photos)))
            for _ in range(int(rng.integers(0, 9))):
                t = c + dt.timedelta(days=float(rng.exponential(10)))
                pool = INNOCENT if rng.random() < lk else HONEST_MESSAGES
                messages.append((t, str(rng.choice(pool)).format(name=rng.choice(NAMES))))
            reports = int(rng.random() < 0.01)
        else:
            careful = rng.random() < setting.subtle
            p = 0.3 if careful else setting.tactic
            aged = rng.random() < (0.6 if careful else 0.15)
            begin = c + dt.timedelta(days=float(rng.uniform(30, 90)) if aged else float(rng.uniform(0, 0.5)))
            tactics = {k for k in ("cheap", "photos", "copy", *SCAM_PHRASES, "velocity") if rng.random() < p}
            n = int(rng.integers(2, 6)) if "velocity" in tactics else 1
            for _ in range(n):
                species = int(rng.choice([1, 2], p=[0.8, 0.2]))
                breed = str(rng.choice(BREEDS[species]))
                name = str(rng.choice(NAMES))
                t = begin + dt.timedelta(hours=float(rng.uniform(0, 72)))
                price = TYPICAL[species] * (rng.uniform(0.15, 0.5) if "cheap" in tactics else rng.lognormal(0, 0.3))
                earlier = [h for when, h in posted if when < t]
                photos = [int(rng.integers(0, 2**63)) for _ in range(int(rng.integers(1, 4)))]
                if "photos" in tactics and earlier:
                    photos = [_flip(rng, earlier[int(rng.integers(len(earlier)))], 3) for _ in photos]
                if "copy" in tactics:
                    text = str(rng.choice(RING_TEMPLATES)).format(breed=breed, name=name, price=int(price))
                else:
                    text = _honest_text(rng, name, breed, f"Rehoming fee ${int(price)}.")
                if "off_platform_payment" in tactics and rng.random() < 0.3:
                    text += " Payment by Zelle or gift card only."
                listings.append(Listing(create_time=t, species=species, breed=breed, text=text, photos=tuple(photos)))
            for _ in range(int(rng.integers(2, 10))):
                t = begin + dt.timedelta(days=float(rng.exponential(2)))
                used = [k for k in SCAM_PHRASES if k in tactics]
                if careful and rng.random() < 0.4:
                    text = str(rng.choice(SUBTLE_PHRASES))
                elif used and rng.random() < 0.6:
                    text = str(rng.choice(SCAM_PHRASES[str(rng.choice(used))]))
                else:
                    text = str(rng.choice(HONEST_MESSAGES))
                messages.append((t, text.format(name=rng.choice(NAMES))))
            reports = int(rng.integers(1, 3)) if rng.random() < 0.15 else 0
        label = int(bool(scam[i]) and rng.random() >= setting.label_noise)
        accounts.append(Account(index=i, scam=bool(scam[i]), label=label, create_time=c, listings=listings,
                                messages=sorted(messages), upheld_reports=reports))
    return sorted(accounts, key=lambda a: a.index)
