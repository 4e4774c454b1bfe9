"""A seeded synthetic population for the offline evaluation: pets with the features the service keeps,
people with hidden tastes, and interactions drawn from those tastes over time.

Pets: species (dogs and cats mostly), size (by species), age, energy (the young are livelier), a place
in one of a few cities, good with children / other pets, and two things no feature shows: an appeal
(photos, charm) and a latent "character" vector.

People: a home (type, children, other pets: stated, as the app asks), a place, and hidden tastes:
  - species: a Dirichlet draw peaked on one or two species;
  - size: a favourite size, liked less the further a pet is from it;
  - age: young, adult or senior pets, with a tolerance;
  - distance tolerance (km): how far they would travel;
  - compatibility sensitivity: how much an energetic dog in a flat, or a pet not good with their
    children, puts them off;
  - character: a vector near one of a few taste clusters (what collaborative filtering can find).
What they *state* (their preferences in the app) is a partial, sometimes outdated view of the tastes:
their favourite species with some probability, their favourite size less often, an age range rarely,
a radius of about twice their tolerance half of the time.

Interactions: each person is shown a feed of pets, mostly near them, more often the appealing ones
(exposure bias: what popularity learns). They like pets with probability increasing in their hidden
utility (plus Gumbel noise of the setting's scale); some likes are super-likes, some become matches and
a few adoptions. Every interaction has a time, uniform over the period: the evaluation holds out the
latest ones."""
from __future__ import annotations

import dataclasses

import numpy as np

from ml.recommender import scoring
from ml.recommender.model import ADOPTION, LIKE, MATCH, SUPER_LIKE
from ml.recommender.scoring import Person

CITIES = [(35.68, 139.77), (34.69, 135.50), (35.18, 136.91), (43.06, 141.35), (33.59, 130.40)]
SPECIES = np.array([1, 2, 3, 4, 5, 6, 7])  # dog, cat, rabbit, bird, hamster, guinea pig, reptile
SPECIES_SHARE = np.array([0.42, 0.34, 0.08, 0.06, 0.04, 0.03, 0.03])


@dataclasses.dataclass(frozen=True, kw_only=True)
class Setting:
    name: str
    seed: int
    users: int
    pets: int
    cities: int = 3
    likes_per_user: float = 12.0  # mean of a Poisson draw, at least 1
    feed_size: int = 150  # pets shown to each person
    noise: float = 1.0  # scale of the Gumbel noise on each utility (choice randomness)
    clusters: int = 6  # taste clusters of the character vectors
    latent: int = 8  # size of the character vectors


@dataclasses.dataclass(frozen=True, kw_only=True)
class Population:
    setting: Setting
    pet_features: dict[str, np.ndarray]  # species, size, energy, age_months, latitude, longitude, good_with_*
    people: list[Person]
    # Interactions: user index, pet index, weight, time (days since the start).
    users: np.ndarray
    pets: np.ndarray
    weights: np.ndarray
    times: np.ndarray


def generate(setting: Setting) -> Population:
    rng = np.random.default_rng(setting.seed)
    n, m = setting.pets, setting.users
    cities = np.asarray(CITIES[:setting.cities])

    # Pets.
    species = rng.choice(SPECIES, size=n, p=SPECIES_SHARE)
    size = np.where(species == 1, rng.choice([1, 2, 3, 4], size=n, p=[0.3, 0.35, 0.25, 0.1]),
                    np.where(species == 2, rng.choice([1, 2], size=n, p=[0.6, 0.4]), 1))
    age = rng.gamma(2.0, 24.0, size=n).clip(2, 200)
    lively = np.clip(1.6 - age / 100 + 0.6 * (species == 1) + rng.normal(0, 0.5, n), 0, 2.99)
    energy = lively.astype(np.int64) + 1
    home_city = rng.integers(0, len(cities), n)
    lat = cities[home_city, 0] + rng.normal(0, 0.12, n)  # about 13 km of spread
    lon = cities[home_city, 1] + rng.normal(0, 0.15, n)
    good_children = rng.random(n) < np.where(energy == 3, 0.4, 0.7)
    good_pets = rng.random(n) < 0.55
    appeal = rng.normal(0, 0.6, n)
    centres = rng.normal(0, 1, (setting.clusters, setting.latent))
    character = centres[rng.integers(0, setting.clusters, n)] + rng.normal(0, 0.6, (n, setting.latent))
    pets = scoring.PetArrays(species=species, size=size, energy=energy, age_months=age, latitude=lat, longitude=lon,
                             good_with_children=good_children, good_with_pets=good_pets,
                             popularity=np.zeros(n))

    # People and their hidden tastes.
    people, rows_u, rows_p, weights, times = [], [], [], [], []
    for u in range(m):
        species_taste = rng.dirichlet(np.full(len(SPECIES), 0.25) + 3.0 * SPECIES_SHARE)
        favourite_size = int(rng.choice([1, 2, 3, 4], p=[0.35, 0.35, 0.2, 0.1]))
        age_centre, age_width = [(8, 10), (40, 30), (110, 50)][rng.choice(3, p=[0.4, 0.45, 0.15])]
        tolerance = float(rng.choice([6.0, 15.0, 40.0], p=[0.35, 0.45, 0.2]))
        city = cities[rng.integers(0, len(cities))]
        plat, plon = city[0] + rng.normal(0, 0.1), city[1] + rng.normal(0, 0.12)
        home = int(rng.choice([1, 2, 3, 4], p=[0.45, 0.3, 0.2, 0.05]))
        children, others = bool(rng.random() < 0.35), bool(rng.random() < 0.4)
        sensitivity = rng.uniform(0.5, 2.5)
        taste = centres[rng.integers(0, setting.clusters)] + rng.normal(0, 0.5, setting.latent)
        top_species = int(SPECIES[np.argmax(species_taste)])
        person = Person(
            species=[top_species] if rng.random() < 0.6 else [],
            sizes=[favourite_size] if rng.random() < 0.35 and top_species == 1 else [],
            min_age_months=max(0, age_centre - age_width) if rng.random() < 0.25 else 0,
            max_age_months=age_centre + age_width if rng.random() < 0.25 else 0,
            latitude=plat, longitude=plon, radius_km=2 * tolerance if rng.random() < 0.5 else 0.0,
            home_type=home, has_children=children, has_other_pets=others)
        people.append(person)

        # The feed: pets near the person, the appealing ones more often.
        here = Person(latitude=plat, longitude=plon)
        km = scoring.distances_km(pets, here)
        exposure = np.exp(-km / 60.0 + 0.8 * appeal)
        exposure /= exposure.sum()
        shown = rng.choice(n, size=min(setting.feed_size, n), replace=False, p=exposure)
        fit = scoring.compatibility(pets.take(shown), Person(home_type=home, has_children=children,
                                                             has_other_pets=others))
        utility = (2.0 * np.log(species_taste[np.searchsorted(SPECIES, species[shown])] + 1e-3)
                   - 0.9 * np.abs(size[shown] - favourite_size) * (species[shown] == 1)
                   - 1.2 * np.abs(age[shown] - age_centre) / age_width
                   - 1.5 * km[shown] / tolerance
                   + sensitivity * np.log(fit)
                   + 0.6 * (character[shown] @ taste) / np.sqrt(setting.latent)
                   + appeal[shown])
        noisy = utility + setting.noise * rng.gumbel(size=len(shown))
        k = max(1, min(len(shown) // 3, rng.poisson(setting.likes_per_user)))
        liked = shown[np.argsort(-noisy)[:k]]
        for p in liked:
            r = rng.random()
            w = ADOPTION if r < 0.02 else MATCH if r < 0.15 else SUPER_LIKE if r < 0.25 else LIKE
            rows_u.append(u)
            rows_p.append(p)
            weights.append(w)
            times.append(rng.uniform(0, 90))

    return Population(
        setting=setting, people=people,
        pet_features={"species": species, "size": size, "energy": energy, "age_months": age, "latitude": lat,
                      "longitude": lon, "good_with_children": good_children, "good_with_pets": good_pets},
        users=np.asarray(rows_u), pets=np.asarray(rows_p), weights=np.asarray(weights, np.float64),
        times=np.asarray(times))
