"""AIP helpers shared by the services: resource names, page tokens, field masks, ids, timestamps."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import unicodedata
import secrets
import uuid

from google.protobuf import field_mask_pb2, timestamp_pb2
from google.protobuf.message import Message

from mesh import errors, principal
from mesh.config import Settings, local_secret


_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def new_id() -> str:
    return uuid.uuid4().hex


def parse_name(name: str, pattern: str, field: str = "name") -> list[str]:
    """Ids in `name` for a pattern like 'pets/{}/photos/{}'; INVALID_ARGUMENT when it does not match."""
    parts = name.split("/")
    pat = pattern.split("/")
    if len(parts) != len(pat):
        raise errors.invalid_argument((field, f"must look like {pattern.replace('{}', '{id}')}"))
    ids = []
    for got, want in zip(parts, pat, strict=True):
        if want == "{}":
            if not _ID.match(got):
                raise errors.invalid_argument((field, f"{got!r} is not a valid id in {name!r}"))
            ids.append(got)
        elif got != want:
            raise errors.invalid_argument((field, f"must look like {pattern.replace('{}', '{id}')}"))
    return ids


def resolve_user(name: str, field: str = "name", suffix: str = "") -> str:
    """The user id in `users/{id}{suffix}`; `users/me{suffix}` is the caller."""
    if name == f"users/me{suffix}":
        return principal.require().user_id
    return parse_name(name, "users/{}" + suffix, field)[0]


def page_size(value: int, field: str = "page_size") -> int:
    if value < 0:
        raise errors.invalid_argument((field, "must not be negative"))
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


# Page tokens are signed, so a client can hand back only positions this service wrote: whatever a
# token holds is then the server's own (types and lengths included). One key per process, set from
# the settings at start (use_page_token_key); until then a random one.
_page_token_key = secrets.token_bytes(32)
MAX_PAGE_TOKEN_CHARS = 1024


def page_token_key(settings: Settings) -> bytes:
    """PETPLATFORM_PAGE_TOKEN_KEY (required in the real profile, shared by the replicas); unset, one
    kept under the data dir, so tokens survive restarts."""
    if settings.page_token_key:
        return settings.page_token_key.get_secret_value().encode()
    return local_secret(settings.data_dir / "page-token-key")


def use_page_token_key(settings: Settings) -> None:
    global _page_token_key
    _page_token_key = page_token_key(settings)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _fingerprint(query: Message | None) -> str:
    """The request a token belongs to: its type and filters, paging aside."""
    if query is None:
        return ""
    q = query.__class__()
    q.CopyFrom(query)
    for f in ("page_token", "page_size"):
        if f in q.DESCRIPTOR.fields_by_name:
            q.ClearField(f)
    digest = hashlib.sha256(q.DESCRIPTOR.full_name.encode() + b"\0" + q.SerializeToString(deterministic=True))
    return digest.hexdigest()[:16]


def _signature(payload: bytes) -> bytes:
    return hmac.digest(_page_token_key, b"page-token\0" + payload, "sha256")[:16]  # one-shot: a page's token each


def encode_page_token(position: list, query: Message | None = None) -> str:
    """Opaque, signed token of a keyset position, tied to the request's filters."""
    payload = json.dumps({"p": position, "q": _fingerprint(query)}, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_signature(payload))}"


def decode_page_token(token: str, query: Message | None = None) -> list | None:
    if not token:
        return None
    try:
        if len(token) > MAX_PAGE_TOKEN_CHARS:
            raise ValueError
        payload, signature = (_unb64(part) for part in token.split("."))  # exactly two parts
    except (ValueError, binascii.Error):
        raise errors.invalid_argument(("page_token", "malformed page token")) from None
    if not hmac.compare_digest(signature, _signature(payload)):
        raise errors.invalid_argument(("page_token", "not a page token this service issued"))
    data = json.loads(payload)
    if data["q"] != _fingerprint(query):
        raise errors.invalid_argument(("page_token", "the request's filters changed since this token was issued"))
    return data["p"]


def check_mask(mask: field_mask_pb2.FieldMask, allowed: set[str], field: str = "update_mask") -> set[str]:
    """The paths of an update mask; `*` means all of `allowed`. Unknown paths are INVALID_ARGUMENT."""
    paths = set(mask.paths)
    if not paths:
        raise errors.invalid_argument((field, "must name at least one field"))
    if "*" in paths:
        if len(paths) > 1:
            raise errors.invalid_argument((field, "'*' cannot be combined with other paths"))
        return set(allowed)
    unknown = sorted(p for p in paths if p not in allowed)
    if unknown:
        raise errors.invalid_argument(
            *((f"{field}.paths", f"{p!r} cannot be updated; updatable: {', '.join(sorted(allowed))}") for p in unknown))
    return paths


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def check_text(violations: list, field: str, value: str, *, max_len: int, min_len: int = 0) -> None:
    """Appends a violation when `value` is outside the length bounds or holds control characters."""
    if len(value.strip()) < min_len:
        violations.append((field, "required" if min_len == 1 else f"must have at least {min_len} characters"))
    elif len(value) > max_len:
        violations.append((field, f"must have at most {max_len} characters"))
    elif any(ord(c) < 32 and c not in "\n\t\r" for c in value):
        violations.append((field, "must not contain control characters"))


# Characters that make a name read other than it is: Cc control, Cf format (bidirectional overrides,
# zero-width characters), Zl/Zp line and paragraph separators, Cn unassigned, Co private use, Cs surrogates.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cn", "Co", "Cs"})


def has_hidden_characters(value: str) -> bool:
    """Whether text holds a character that makes it read other than it is (see _HIDDEN_CATEGORIES)."""
    return any(unicodedata.category(c) in _HIDDEN_CATEGORIES for c in value)


# Names that would pass for the platform's staff; the brand may not appear anywhere in a name.
RESERVED_NAMES = frozenset({"admin", "administrator", "moderator", "moderation", "support", "helpdesk", "staff",
                            "official", "system", "sysadmin", "root", "superuser", "security", "petplatform"})
BRAND = "petplatform"
# Characters that pass for Latin letters (digits, symbols, Cyrillic, Greek, dotless i), folded to the letter
# they imitate, after case folding. The usual substitutions, not all of Unicode's confusables.txt (which the
# standard library lacks). l, 1, | and ! all pass for i, so they fold together.
_LOOKALIKES = str.maketrans("0134578@$|!lıɑ" "аеорсухіјѕԁһӏвкмнт" "αβγεηικμνορτυχ",
                            "oieastbasiiiia" "aeopcyxijsdhibkmht" "abyenikmnoptux")


def _skeleton(name: str) -> str:
    """What a name reads as: NFKC, case folded, accents dropped, look-alikes folded, only letters and digits."""
    folded = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", name).casefold())
    plain = "".join(c for c in folded if not unicodedata.category(c).startswith("M")).translate(_LOOKALIKES)
    return "".join(c for c in plain if c.isalnum()).replace("rn", "m")


_RESERVED_SKELETONS = frozenset(_skeleton(n) for n in RESERVED_NAMES)
_BRAND_SKELETON = _skeleton(BRAND)


def check_display_name(violations: list, field: str, value: str) -> None:
    """check_text for a name shown to other users (1 to 64 characters), which must also read as what it is
    (no invisible, direction-changing or unassigned characters) and not pass for staff: a reserved name, or
    the brand anywhere, compared ignoring case, width, accents, spaces, punctuation and look-alikes."""
    found = len(violations)
    check_text(violations, field, value, min_len=1, max_len=64)
    if len(violations) > found:
        return
    skeleton = _skeleton(value)
    if has_hidden_characters(value):
        violations.append((field, "must not contain control, invisible, direction-changing, unassigned or "
                                  "private-use characters"))
    elif skeleton in _RESERVED_SKELETONS or _BRAND_SKELETON in skeleton:
        violations.append((field, "is reserved; choose another name"))
