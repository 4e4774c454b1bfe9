"""The one display-name rule both services use (auth Register, user UpdateUser)."""
from __future__ import annotations

import pytest

from mesh.resources import check_display_name


def problem(name: str) -> str | None:
    violations: list = []
    check_display_name(violations, "display_name", name)
    assert len(violations) <= 1
    return violations[0][1] if violations else None


@pytest.mark.parametrize("name", [
    "Alice", "José", "Zoë", "李小龍", "محمد", "Анна", "Ελένη", "देवनागरी", "Anne-Marie O'Neil", "😺 Cat Lover",
    "Mochi's human", "Badminton Club", "Admiral Ackbar", "Rooty", "Support Dogs of Tokyo", "Sys Tem Of Down",
    "Demo Admin", "x" * 64,
])
def test_ordinary_names_pass(name):
    assert problem(name) is None


@pytest.mark.parametrize("name", [
    "Right\u202eto left",  # RIGHT-TO-LEFT OVERRIDE (Cf)
    "Iso\u2066late\u2069",  # isolates (Cf)
    "\u061cArabic mark",  # ARABIC LETTER MARK (Cf)
    "Zero\u200bwidth", "Join\u200der", "Non\u200cjoiner", "Word\u2060joiner", "\ufeffBOM", "Soft\u00adhyphen",  # Cf
    "Tab\tname", "New\nline", "Bell\x07", "Del\x7f", "C1\x85",  # Cc
    "Line\u2028separator", "Paragraph\u2029separator",  # Zl, Zp
    "Private\ue000use", "Plane 15 \U000f0000",  # Co
    "Unassigned\u0378",  # Cn
    "Lone \ud800 surrogate",  # Cs (cannot arrive over protobuf, refused all the same)
])
def test_invisible_and_reordering_characters_are_refused(name):
    assert "characters" in problem(name)


@pytest.mark.parametrize("name", [
    "admin", "Admin", "ADMIN", " admin", "Ad min", "a.d.m.i.n", "ad-min", "_admin_",
    "\u0410dmin",  # Cyrillic A
    "\u0391D\u039c\u0399\u039d",  # Greek capitals A, M, I, N
    "ａｄｍｉｎ",  # full width
    "𝐚𝐝𝐦𝐢𝐧",  # mathematical bold
    "adm1n", "@dmin", "admín", "adrnin", "ADMlN",
    "Administrator", "Moderator", "m0derat0r", "Support", "5upp0rt", "SYSTEM", "s\u0443stem", "root", "r00t",
    "Staff", "Official", "Superuser", "Sysadmin", "Helpdesk", "Security",
    "PetPlatform", "Pet Platform", "pet-platform", "Ｐｅｔ Ｐｌａｔｆｏｒｍ", "PetPlatform Support",
    "Official Pet Platform Team", "petp1atform",
])
def test_names_that_pass_for_staff_are_reserved(name):
    assert "reserved" in problem(name)


@pytest.mark.parametrize("name, words", [("", "required"), ("   ", "required"), ("x" * 65, "at most 64")])
def test_length_as_for_any_text(name, words):
    assert words in problem(name)
