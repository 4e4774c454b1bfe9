"""The parts of a recommender score, on hand-made pets: each part's rule, without a server."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from ml.recommender import scoring
from ml.recommender.catalogue import Catalogue, month_index
from ml.recommender.model import Model, train
from ml.recommender.ranker import Serving, rank
from ml.recommender.scoring import Person, PetArrays, Taste, Weights
from petplatform.common.v1 import animal_pb2 as a

TODAY = dt.date(2026, 11, 1)


def pets(**columns) -> PetArrays:
    n = len(next(iter(columns.values())))
    base = dict(species=[a.SPECIES_DOG] * n, size=[0] * n, energy=[0] * n, age_months=[np.nan] * n,
                latitude=[np.nan] * n, longitude=[np.nan] * n, good_with_children=[True] * n,
                good_with_pets=[True] * n, popularity=[0.0] * n)
    base.update(columns)
    return PetArrays(**{k: np.asarray(v) for k, v in base.items()})


def test_compatibility_weighs_energy_size_children_and_other_pets_against_the_home():
    p = pets(energy=[a.ENERGY_LEVEL_LOW, a.ENERGY_LEVEL_HIGH, a.ENERGY_LEVEL_HIGH, 0],
             size=[a.PET_SIZE_SMALL, a.PET_SIZE_SMALL, a.PET_SIZE_EXTRA_LARGE, 0],
             species=[a.SPECIES_CAT] * 4, good_with_children=[True, True, True, False])
    flat = scoring.compatibility(p, Person(home_type=a.HOME_TYPE_APARTMENT))
    assert flat[0] == 1.0 and flat[1] < 0.5 and flat[2] < flat[1] and flat[3] == 1.0
    farm = scoring.compatibility(p, Person(home_type=a.HOME_TYPE_FARM))
    assert farm[1] > flat[1] and farm[2] > flat[2]
    with_children = scoring.compatibility(p, Person(has_children=True))
    assert list(with_children) == [1.0, 1.0, 1.0, scoring.NOT_GOOD_WITH_CHILDREN]
    unknown_home = scoring.compatibility(p, Person())
    assert list(unknown_home) == [1.0] * 4
    lone = pets(good_with_pets=[False, True])
    assert list(scoring.compatibility(lone, Person(has_other_pets=True))) == [scoring.NOT_GOOD_WITH_PETS, 1.0]


def test_stated_preferences_score_species_size_and_age():
    p = pets(species=[a.SPECIES_DOG, a.SPECIES_CAT, a.SPECIES_DOG, a.SPECIES_DOG],
             size=[a.PET_SIZE_SMALL, a.PET_SIZE_SMALL, a.PET_SIZE_MEDIUM, a.PET_SIZE_LARGE],
             age_months=[6, 6, 48, np.nan])
    assert scoring.stated_fit(p, Person()) is None
    assert list(scoring.stated_fit(p, Person(species=[a.SPECIES_DOG]))) == [1, 0, 1, 1]
    assert list(scoring.stated_fit(p, Person(sizes=[a.PET_SIZE_SMALL]))) == [1, 1, 0.5, 0]
    ages = scoring.stated_fit(p, Person(min_age_months=3, max_age_months=12))
    assert ages[0] == 1 and ages[2] == pytest.approx(np.exp(-3)) and ages[3] == 0.5
    assert list(scoring.content(p, Person(), None)) == [0.5] * 4  # nothing known: neutral


def test_taste_follows_the_liked_pets():
    liked = pets(species=[a.SPECIES_CAT, a.SPECIES_CAT, a.SPECIES_DOG], size=[1, 1, 3], energy=[1, 1, 3],
                 age_months=[12, 14, 100])
    taste = Taste.of(liked, np.array([1.0, 1.0, 1.0]))
    assert taste.species[a.SPECIES_CAT] == pytest.approx(2 / 3)
    fit = scoring.taste_fit(pets(species=[a.SPECIES_CAT, a.SPECIES_DOG, a.SPECIES_BIRD], size=[1, 3, 1],
                                 energy=[1, 3, 1], age_months=[13, 100, 13]), taste)
    assert fit[0] > fit[1] > 0 and fit[2] < fit[0]
    assert Taste.of(liked, np.zeros(3)) is None


def test_distance_decays_over_half_the_radius_and_is_neutral_when_unknown():
    p = pets(latitude=[35.68, 35.68 + 0.18, np.nan], longitude=[139.77, 139.77, 139.77])
    here = Person(latitude=35.68, longitude=139.77, radius_km=40)
    km = scoring.distances_km(p, here)
    assert km[0] == pytest.approx(0) and km[1] == pytest.approx(20.0, rel=0.01) and np.isnan(km[2])
    assert list(scoring.distance(km, here)) == pytest.approx([1.0, np.exp(-1), 1.0], rel=0.01)
    assert np.isnan(scoring.distances_km(p, Person())).all()


@pytest.mark.parametrize("method", ["als", "svd"])
def test_collaborative_folds_in_likes_and_ignores_pets_the_model_has_not_seen(method):
    # Two tastes: p0-p2 go together, p3-p5 too; someone who liked p0 should get p1 before p4.
    triples = [(f"{g}{u}", f"p{g * 3 + i}", 1.0) for g in (0, 1) for u in range(6) for i in range(3)]
    model = train(triples, now=dt.datetime.now(dt.timezone.utc), method=method)
    rows = model.index
    score = scoring.collaborative(model, np.array([rows["p1"], rows["p4"], -1]), np.array([rows["p0"]]),
                                  np.array([1.0]))
    assert score[0] == 1.0 and score[0] > score[1] and score[2] == 0
    assert scoring.collaborative(model, np.array([0]), np.array([-1]), np.array([1.0])) is None


def test_weights_without_collaborative_keep_their_total():
    w = Weights().for_person(has_collaborative=False)
    assert w.collaborative == 0
    assert w.content + w.distance + w.compatibility + w.popularity == pytest.approx(1.0)
    assert Weights().for_person(has_collaborative=True) == Weights()


def test_the_ranker_puts_unknown_and_unseen_pets_last_and_keeps_request_order_on_ties():
    cat = Catalogue(capacity=1)  # grows
    for i in range(3):
        cat.put(f"pets/{i:032x}", species=a.SPECIES_DOG, size=0, energy=0, birth_month=month_index(TODAY) - 12,
                latitude=None, longitude=None, good_with_children=True, good_with_pets=True, popularity=0.0,
                live=True)
    cat.put(f"pets/{3:032x}", live=False)  # deleted
    rows = cat.rows_of([f"pets/{i:032x}" for i in (3, 2, 9, 0, 1)])
    assert list(rows) == [-1, 2, -1, 0, 1]
    model = Model(version="m", trained_at=dt.datetime.now(dt.timezone.utc), pets=[], factors=np.zeros((0, 1)),
                  interactions=0)
    r = rank(cat, Serving(model), rows, Person(), np.array([], np.int64), np.array([]), weights=Weights(),
             today=TODAY)
    assert list(r.order) == [1, 3, 4, 0, 2] and r.score[0] == 0 and r.score[1] > 0


@pytest.mark.parametrize("method", ["als", "svd"])
def test_a_model_survives_its_artefact(method):
    model = train([("u", "p", 1.0), ("u", "q", 2.0), ("v", "p", 1.0), ("w", "q", 1.0)],
                  now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), method=method)
    back = Model.from_bytes(model.to_bytes())
    assert back.version == model.version and back.pets == model.pets
    assert np.array_equal(back.factors, model.factors) and back.alpha == model.alpha
    assert (back.gram is None) == (method == "svd") and (back.gram is None or np.array_equal(back.gram, model.gram))
    assert back.trained_at == model.trained_at and back.rows_of(["q", "zz"]).tolist() == [model.pets.index("q"), -1]


def test_the_response_bytes_are_the_messages_made_one_by_one():
    from ml.recommender import wire
    from petplatform.recommender.v1 import recommender_pb2
    rng = np.random.default_rng(3)
    names = [f"pets/{i:032x}" for i in range(50)]
    columns = {f: rng.random(50) for f in wire.NUMBERS}
    columns["collaborative"][:10] = 0.0  # zeros written on the wire read as the default
    built = wire.ranked_pets(names, columns)
    expected = recommender_pb2.RankPetsResponse(pets=[
        recommender_pb2.RankedPet(pet=n, **{f: float(columns[f][i]) for f in wire.NUMBERS})
        for i, n in enumerate(names)])
    assert built == expected
    assert built.SerializeToString() == expected.SerializeToString()
    assert wire.ranked_pets([], {f: np.zeros(0) for f in wire.NUMBERS}) == recommender_pb2.RankPetsResponse()
