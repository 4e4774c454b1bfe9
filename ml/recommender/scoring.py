"""The parts of a score, as vectorised functions of pet feature arrays: the serving path (RankPets), the
offline evaluation and the bench all call these, so what is measured is what is served.

Every part is 0 to 1 for each candidate. Enum values are the contracts' (petplatform.common.v1 Species,
PetSize, EnergyLevel, HomeType); 0 means unknown and scores neutrally."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ml.recommender.model import Model

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

N_SPECIES = 10  # Species enum values 0..9
N_SIZES = 5  # PetSize 0..4
N_ENERGY = 4  # EnergyLevel 0..3
N_HOMES = 5  # HomeType 0..4

# Compatibility matrices, [home type][pet value]. Rows: unknown, apartment, house, house with yard, farm.
# Energy columns: unknown, low, medium, high: an energetic dog in a flat is the classic mismatch.
ENERGY_FOR_HOME = np.array([
    [1.0, 1.0, 1.0, 1.0],
    [1.0, 1.0, 0.75, 0.35],
    [1.0, 0.95, 1.0, 0.75],
    [1.0, 0.85, 1.0, 1.0],
    [1.0, 0.75, 0.95, 1.0],
])
# Size columns: unknown, small, medium, large, extra large.
SIZE_FOR_HOME = np.array([
    [1.0, 1.0, 1.0, 1.0, 1.0],
    [1.0, 1.0, 0.8, 0.45, 0.25],
    [1.0, 1.0, 1.0, 0.85, 0.7],
    [1.0, 0.95, 1.0, 1.0, 1.0],
    [1.0, 0.9, 1.0, 1.0, 1.0],
])
# Species columns (Species enum): dogs want space, small caged animals suit any home.
SPECIES_FOR_HOME = np.ones((N_HOMES, N_SPECIES))
SPECIES_FOR_HOME[1, 1] = 0.8  # dog in an apartment
SPECIES_FOR_HOME[4, 1] = 1.0
NOT_GOOD_WITH_CHILDREN = 0.35  # factor when the home has children and the pet is not marked good with them
NOT_GOOD_WITH_PETS = 0.45  # factor when the home has other pets and the pet is good with neither dogs nor cats

DEFAULT_DISTANCE_SCALE_KM = 20.0  # e-folding distance when the person states no radius
EARTH_RADIUS_KM = 6371.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Weights:
    """The hybrid: score = sum of weight * part. Collaborative counts only when the person has
    interactions the model knows; the others are then scaled up to keep the same total."""

    # Chosen on a validation population (setting A's generator with another seed), not on the tables'.
    content: float = 0.20
    collaborative: float = 0.30
    distance: float = 0.35
    compatibility: float = 0.10
    popularity: float = 0.05

    def for_person(self, *, has_collaborative: bool) -> Weights:
        rest = self.content + self.distance + self.compatibility + self.popularity
        if has_collaborative or rest == 0:
            return self
        k = (rest + self.collaborative) / rest
        return Weights(content=self.content * k, collaborative=0.0, distance=self.distance * k,
                       compatibility=self.compatibility * k, popularity=self.popularity * k)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PetArrays:
    """Features of a set of pets, one entry per pet (views into the catalogue for the candidates)."""

    species: Ints
    size: Ints
    energy: Ints
    age_months: Floats  # NaN when unknown
    latitude: Floats  # NaN when unknown
    longitude: Floats
    good_with_children: npt.NDArray[np.bool_]
    good_with_pets: npt.NDArray[np.bool_]  # good with dogs or with cats
    popularity: Floats  # weighted count of likes, matches and adoptions

    def take(self, rows: Ints) -> PetArrays:
        return PetArrays(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Person:
    """What is known of the person ranked for: stated preferences and home, and their likes."""

    species: Sequence[int] = ()  # empty: any
    sizes: Sequence[int] = ()
    min_age_months: int = 0
    max_age_months: int = 0  # 0: no limit
    latitude: float | None = None
    longitude: float | None = None
    radius_km: float = 0.0
    home_type: int = 0
    has_children: bool = False
    has_other_pets: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Taste:
    """What the pets a person liked have in common: distributions over species, size and energy
    (each summing to 1) and the weighted mean and spread of their ages."""

    species: Floats
    size: Floats
    energy: Floats
    age_mean: float  # NaN when no liked pet's age is known
    age_spread: float

    @staticmethod
    def of(liked: PetArrays, weights: Floats) -> Taste | None:
        if len(weights) == 0 or weights.sum() <= 0:
            return None
        w = weights / weights.sum()
        ages = liked.age_months
        known = ~np.isnan(ages)
        if known.any():
            aw = w[known] / w[known].sum()
            mean = float((ages[known] * aw).sum())
            spread = float(np.sqrt((aw * (ages[known] - mean) ** 2).sum()))
        else:
            mean, spread = float("nan"), 0.0
        def share(values: Ints, n: int) -> Floats:
            return np.bincount(values, w, n).astype(np.float64)

        return Taste(species=share(liked.species, N_SPECIES), size=share(liked.size, N_SIZES),
                     energy=share(liked.energy, N_ENERGY), age_mean=mean, age_spread=spread)


def stated_fit(pets: PetArrays, person: Person) -> Floats | None:
    """Pet features against the stated preferences: the mean of the species, size and age terms the
    person stated; None when they stated none."""
    terms = []
    if person.species:
        terms.append(np.isin(pets.species, np.asarray(person.species)).astype(np.float64))
    if person.sizes:
        wanted = np.asarray(person.sizes)
        gap = np.abs(pets.size[:, None] - wanted[None, :]).min(axis=1)
        # One size off is half a match; an unknown size is neither.
        terms.append(np.where(pets.size == 0, 0.5, np.select([gap == 0, gap == 1], [1.0, 0.5], 0.0)))
    if person.min_age_months or person.max_age_months:
        ages = pets.age_months
        low = person.min_age_months
        high = person.max_age_months or np.inf
        outside = np.maximum(low - ages, 0) + np.maximum(ages - high, 0)
        terms.append(np.where(np.isnan(ages), 0.5, np.exp(-np.nan_to_num(outside) / 12.0)))
    if not terms:
        return None
    return np.mean(terms, axis=0)


def taste_fit(pets: PetArrays, taste: Taste) -> Floats:
    """Pet features against the pets the person liked: how typical each feature is of their likes."""
    def share(dist: Floats, values: Ints) -> Floats:
        top = dist.max()
        return dist[values] / top if top > 0 else np.full(len(values), 0.5)

    terms = [share(taste.species, pets.species), share(taste.size, pets.size), share(taste.energy, pets.energy)]
    if not np.isnan(taste.age_mean):
        gap = np.abs(pets.age_months - taste.age_mean)
        terms.append(np.where(np.isnan(gap), 0.5, np.exp(-np.nan_to_num(gap) / (taste.age_spread + 12.0))))
    return np.mean(terms, axis=0)


def content(pets: PetArrays, person: Person, taste: Taste | None) -> Floats:
    """Stated preferences and likes, averaged when both are known; 0.5 for every pet when neither is."""
    parts = [p for p in (stated_fit(pets, person), taste_fit(pets, taste) if taste else None) if p is not None]
    if not parts:
        return np.full(len(pets.species), 0.5)
    return np.mean(parts, axis=0)


def distances_km(pets: PetArrays, person: Person) -> Floats:
    """Great-circle distance from the person to each pet; NaN where either location is unknown."""
    if person.latitude is None or person.longitude is None:
        return np.full(len(pets.species), np.nan)
    lat1, lon1 = np.radians(person.latitude), np.radians(person.longitude)
    lat2, lon2 = np.radians(pets.latitude), np.radians(pets.longitude)
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def distance(km: Floats, person: Person) -> Floats:
    """exp(-d / scale): half the stated radius, or 20 km; 1 where the distance is unknown."""
    scale = person.radius_km / 2 if person.radius_km > 0 else DEFAULT_DISTANCE_SCALE_KM
    return np.where(np.isnan(km), 1.0, np.exp(-np.nan_to_num(km) / scale))


def compatibility(pets: PetArrays, person: Person) -> Floats:
    """The product of the home's fit with the pet's energy, size and species, and of the children and
    other-pets factors."""
    home = person.home_type if 0 <= person.home_type < N_HOMES else 0
    fit = ENERGY_FOR_HOME[home][pets.energy] * SIZE_FOR_HOME[home][pets.size] * SPECIES_FOR_HOME[home][pets.species]
    if person.has_children:
        fit = fit * np.where(pets.good_with_children, 1.0, NOT_GOOD_WITH_CHILDREN)
    if person.has_other_pets:
        fit = fit * np.where(pets.good_with_pets, 1.0, NOT_GOOD_WITH_PETS)
    return fit


def popularity(weights: Floats, top: float) -> Floats:
    """log(1 + w) / log(1 + the catalogue's largest w): a few very popular pets do not flatten the rest."""
    if top <= 0:
        return np.zeros(len(weights))
    return np.log1p(weights) / np.log1p(top)


def collaborative(model: Model, candidate_rows: Ints, liked_rows: Ints, liked_weights: Floats) -> Floats | None:
    """Matrix-factorisation score from the person's weighted interactions, folded in (Model.person), so
    likes made after training count at once; over the candidates' largest, at least 0. Rows of -1 (pets
    the model has not seen) score 0. None when no liked pet is known to the model."""
    known = liked_rows >= 0
    if not known.any():
        return None
    person = model.person(liked_rows[known], liked_weights[known])
    # Every pet the model knows, then the candidates' (a gather of scalars, not of factor rows).
    everyone = np.append(model.factors @ person.astype(np.float32), np.float32(0))  # the last: row -1, unseen
    scores = everyone[candidate_rows].astype(np.float64)
    top = scores.max()
    return np.clip(scores / top, 0.0, 1.0) if top > 0 else np.zeros(len(candidate_rows))
