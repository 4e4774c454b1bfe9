"""Moderation wording shared by the services that hold listings: pet's pre-publish screening and admin's
fraud cases both hold a listing automatically, and its owner must read the same reason either way."""
from __future__ import annotations

# No score, no factors: they would tell a scammer what to change. Moderators see both in the case.
AUTOMATIC_HOLD_REASON = "held for a routine check before it is shown to others"
