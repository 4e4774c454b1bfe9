"""Pet rules as pure functions: field validation, dates with and without a day, ages in months, who may
change a pet."""
from __future__ import annotations

import datetime as dt

from google.type import date_pb2, latlng_pb2
import pytest

from mesh import errors
from mesh.principal import Principal
from petplatform.common.v1 import animal_pb2
from petplatform.pet.v1 import pet_pb2
from services.pet import domain

TODAY = dt.date(2026, 3, 15)


def bad_fields(check, *args, **kwargs) -> dict[str, str]:
    """The field violations a check raises, {} when it passes."""
    try:
        check(*args, **kwargs)
    except errors.ApiError as e:
        assert e.reason == "INVALID_ARGUMENT"
        return {v.field: v.description for v in e.details[0].field_violations}
    return {}


def dog(**fields) -> pet_pb2.Pet:
    return pet_pb2.Pet(**{"display_name": "Mochi", "species": animal_pb2.SPECIES_DOG, **fields})


# --- check_pet ---

def test_a_complete_pet_passes():
    pet = dog(breed="Shiba Inu", sex=pet_pb2.Pet.SEX_FEMALE, size=animal_pb2.PET_SIZE_SMALL,
              status=pet_pb2.Pet.STATUS_AVAILABLE, description="Calm", birth_date=date_pb2.Date(year=2024, month=5),
              location=latlng_pb2.LatLng(latitude=-90, longitude=180))
    assert bad_fields(domain.check_pet, pet, domain.WRITABLE, TODAY) == {}


def test_every_bad_field_is_named_at_once():
    pet = pet_pb2.Pet(display_name="  ", species=999, breed="x" * 65, description="y" * 5001, sex=99, size=99,
                      status=99, birth_date=date_pb2.Date(year=2026, month=3, day=16),
                      location=latlng_pb2.LatLng(latitude=90.5, longitude=-180.5))
    assert set(bad_fields(domain.check_pet, pet, domain.WRITABLE, TODAY)) == {
        "pet.display_name", "pet.species", "pet.breed", "pet.description", "pet.sex", "pet.size", "pet.status",
        "pet.birth_date", "pet.location.latitude", "pet.location.longitude"}


def test_only_the_given_fields_are_checked_under_the_given_prefix():
    pet = pet_pb2.Pet(display_name="", species=0, breed="x" * 65)
    assert bad_fields(domain.check_pet, pet, {"breed"}, TODAY, prefix="update.pet") == {
        "update.pet.breed": "must have at most 64 characters"}
    assert bad_fields(domain.check_pet, pet, set(), TODAY) == {}


def test_species_is_required_and_other_enums_may_stay_unspecified():
    assert bad_fields(domain.check_pet, pet_pb2.Pet(display_name="Mochi"), domain.WRITABLE, TODAY) == {
        "pet.species": "required: one of the Species values"}
    assert bad_fields(domain.check_pet, dog(sex=0, size=0, status=0), domain.WRITABLE, TODAY) == {}


def test_display_names_are_judged_without_their_spaces():
    assert bad_fields(domain.check_pet, dog(display_name=" \t "), {"display_name"}, TODAY) == {
        "pet.display_name": "required"}
    assert bad_fields(domain.check_pet, dog(display_name=f"  {'m' * 64}  "), {"display_name"}, TODAY) == {}
    assert "pet.display_name" in bad_fields(domain.check_pet, dog(display_name="Mo\x00chi"), {"display_name"}, TODAY)


@pytest.mark.parametrize("birth, problem", [
    (date_pb2.Date(year=2026, month=3, day=15), None),  # born today
    (date_pb2.Date(year=2026, month=3), None),  # this month, day unknown
    (date_pb2.Date(year=2026, month=3, day=16), "must not be in the future"),
    (date_pb2.Date(year=2026, month=4), "must not be in the future"),
    (date_pb2.Date(year=2025, month=2, day=29), "not a valid date"),
    (date_pb2.Date(year=2025, month=13), "not a valid date"),
    (date_pb2.Date(year=2025, day=3), "not a valid date: year and month are required"),
    (date_pb2.Date(month=3, day=3), "not a valid date: year and month are required"),
])
def test_birth_dates(birth, problem):
    got = bad_fields(domain.check_pet, dog(birth_date=birth), {"birth_date"}, TODAY).get("pet.birth_date")
    assert (got is None) if problem is None else got.startswith(problem)


def test_no_birth_date_or_location_is_no_violation():
    assert bad_fields(domain.check_pet, dog(), {"birth_date", "location"}, TODAY) == {}


# --- dates ---

def test_to_date_marks_whether_the_day_is_known():
    assert domain.to_date(date_pb2.Date(year=2024, month=2, day=29)) == (dt.date(2024, 2, 29), True)
    assert domain.to_date(date_pb2.Date(year=2024, month=2)) == (dt.date(2024, 2, 1), False)


@pytest.mark.parametrize("d", [date_pb2.Date(), date_pb2.Date(year=2024), date_pb2.Date(month=2, day=1),
                               date_pb2.Date(year=2023, month=2, day=29), date_pb2.Date(year=2024, month=4, day=31),
                               date_pb2.Date(year=2024, month=13, day=1), date_pb2.Date(year=10000, month=1)])
def test_to_date_refuses_what_is_not_a_date(d):
    with pytest.raises(ValueError):
        domain.to_date(d)


@pytest.mark.parametrize("d", [date_pb2.Date(year=2024, month=2, day=29), date_pb2.Date(year=2024, month=2),
                               date_pb2.Date(year=1, month=1, day=1), date_pb2.Date(year=9999, month=12)])
def test_from_date_gives_back_what_to_date_read(d):
    assert domain.from_date(*domain.to_date(d)) == d


def test_from_date_drops_an_unknown_day():
    assert domain.from_date(dt.date(2024, 2, 1), day_known=False) == date_pb2.Date(year=2024, month=2)
    assert domain.from_date(dt.date(2024, 2, 1)) == date_pb2.Date(year=2024, month=2, day=1)


# --- ages ---

@pytest.mark.parametrize("born, on, months", [
    (dt.date(2026, 3, 15), dt.date(2026, 3, 15), 0),
    (dt.date(2026, 2, 15), dt.date(2026, 3, 14), 0),  # a day short of a month
    (dt.date(2026, 2, 15), dt.date(2026, 3, 15), 1),
    (dt.date(2025, 3, 15), dt.date(2026, 3, 15), 12),
    (dt.date(2025, 3, 16), dt.date(2026, 3, 15), 11),
    (dt.date(2026, 1, 31), dt.date(2026, 2, 28), 0),  # no 31st in February: the month completes on 1 March
    (dt.date(2026, 1, 31), dt.date(2026, 3, 1), 1),
    (dt.date(2024, 2, 29), dt.date(2025, 2, 28), 11),  # leap day
    (dt.date(2024, 2, 29), dt.date(2025, 3, 1), 12),
    (dt.date(2025, 12, 31), dt.date(2026, 1, 1), 0),  # across a year
    (dt.date(2026, 3, 16), dt.date(2026, 3, 15), 0),  # born later than `later`: never negative
    (dt.date(2027, 1, 1), dt.date(2026, 3, 15), 0),
])
def test_months_between_counts_whole_months(born, on, months):
    assert domain.months_between(born, on) == months


@pytest.mark.parametrize("today, months, date", [
    (dt.date(2026, 3, 15), 0, dt.date(2026, 3, 15)),
    (dt.date(2026, 3, 15), 14, dt.date(2025, 1, 15)),
    (dt.date(2026, 3, 31), 1, dt.date(2026, 2, 28)),  # clamped to the month's last day
    (dt.date(2024, 3, 31), 1, dt.date(2024, 2, 29)),
    (dt.date(2026, 5, 31), 1, dt.date(2026, 4, 30)),
])
def test_months_ago(today, months, date):
    assert domain.months_ago(today, months) == date


@pytest.mark.parametrize("born", [dt.date(2026, 1, 31), dt.date(2025, 2, 28), dt.date(2024, 2, 29),
                                  dt.date(2025, 12, 1)])
def test_months_ago_and_months_between_agree(born):
    # A pet is n months old exactly when it was born on or before months_ago(today, n): how the search's SQL
    # age bounds (months_ago) match the ages shown (months_between).
    for today in (born + dt.timedelta(days=d) for d in range(0, 800, 7)):
        age = domain.months_between(born, today)
        assert born <= domain.months_ago(today, age)
        assert born > domain.months_ago(today, age + 1)


# --- health records, who may change a pet ---

def test_a_health_record_names_every_bad_field():
    assert bad_fields(domain.check_health_record, pet_pb2.HealthRecord(
        kind=pet_pb2.HealthRecord.KIND_VACCINATION, title="Rabies", date=date_pb2.Date(year=2026, month=1, day=2)),
        TODAY) == {}
    assert set(bad_fields(domain.check_health_record, pet_pb2.HealthRecord(title=" ", notes="n" * 5001,
                                                                           veterinarian="v" * 201), TODAY)) == {
        "health_record.kind", "health_record.title", "health_record.notes", "health_record.veterinarian",
        "health_record.date"}
    assert bad_fields(domain.check_health_record, pet_pb2.HealthRecord(
        kind=99, title="x", date=date_pb2.Date(year=2026, month=3, day=16)), TODAY) == {
        "health_record.kind": "required: one of the Kind values", "health_record.date": "must not be in the future"}


def test_request_ids_are_bounded():
    assert bad_fields(domain.check_request_id, "r" * 64) == {}
    assert bad_fields(domain.check_request_id, "r" * 65) == {"request_id": "must have at most 64 characters"}


def test_only_the_owner_or_an_admin_may_change_a_pet():
    assert domain.may_change(Principal("u1", "user", "s"), "u1")
    assert not domain.may_change(Principal("u2", "user", "s"), "u1")
    assert domain.may_change(Principal("u2", "admin", "s", amr=("pwd", "otp", "mfa")), "u1")
    assert not domain.may_change(Principal("u2", "admin", "s", amr=("pwd",)), "u1")  # no second factor


def test_a_search_statement_is_built_once_per_shape():
    """Issue 8: ListPets' statements are built once; a request's values are bound parameters, so SQLAlchemy
    finds the compiled form of a search like another at once, without building or hashing a statement."""
    from services.pet import search
    near = latlng_pb2.LatLng(latitude=35, longitude=139)
    user = Principal("u1", "user", "s")

    def statement(caller=None, after=None, **fields):
        return search.sql(pet_pb2.ListPetsRequest(**fields), TODAY, caller, after, 20)[0]
    first = statement(species=[1], query="calm dog", near=near, radius_km=5, min_age_months=3)
    assert statement(species=[2, 3], query="shy cat", near=near, radius_km=50, min_age_months=12) is first
    assert statement(species=[1], query="calm", near=near, radius_km=5, min_age_months=3) is not first
    assert statement(caller=user, owner="users/u2") is statement(caller=Principal("u3", "user", "s"), owner="users/x")
    assert statement(caller=user) is not statement(), "the caller's own held pets are in its statement"
    assert statement(after=(TODAY, "a")) is not statement()
