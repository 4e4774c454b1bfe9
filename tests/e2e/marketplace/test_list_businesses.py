"""ListBusinesses: one person's businesses, oldest first, paged; `users/me` for the caller's own. Anyone
signed in lists another's (businesses are public) without their private fields; deleted ones only to their
owner and admins, and only when asked for."""
from __future__ import annotations

import grpc

from petplatform.marketplace.v1 import marketplace_pb2 as m
from tests.support.errors import expect
from tests.support.market import business
from tests.support.platform import Api

CODE = grpc.StatusCode


async def listed(api: Api, who, owner: str, **kw) -> list[m.Business]:
    out, token = [], ""
    while True:
        page = await api.marketplace.ListBusinesses(m.ListBusinessesRequest(
            owner=owner, page_size=2, page_token=token, **kw), metadata=who.md)
        out.extend(page.businesses)
        if not (token := page.next_page_token):
            return out


async def test_a_person_lists_their_businesses_and_others_see_the_public_part(market: Api):
    api = market
    seller, stranger = await api.signup("Seller"), await api.signup("Stranger")
    made = [(await business(api, seller, payout_account=f"acct_local_{i}"))[0] for i in range(3)]
    await business(api, stranger)  # someone else's: never in the seller's list

    mine = await listed(api, seller, "users/me")
    assert [b.name for b in mine] == [b.name for b in made]  # oldest first, across pages of two
    assert [b.payout_account for b in mine] == ["acct_local_0", "acct_local_1", "acct_local_2"]
    assert [b.name for b in await listed(api, seller, seller.name)] == [b.name for b in made]
    assert mine[0].kinds == [m.SERVICE_KIND_WALKING]

    theirs = await listed(api, stranger, seller.name)
    assert [b.name for b in theirs] == [b.name for b in made]
    assert all(b.payout_account == "" for b in theirs)  # the owner's and admins' only

    await api.marketplace.DeleteBusiness(m.DeleteBusinessRequest(name=made[1].name), metadata=seller.md)
    assert [b.name for b in await listed(api, seller, "users/me")] == [made[0].name, made[2].name]
    with_deleted = await listed(api, seller, "users/me", show_deleted=True)
    assert [b.name for b in with_deleted] == [b.name for b in made]
    assert with_deleted[1].HasField("delete_time") and not with_deleted[0].HasField("delete_time")
    assert len(await listed(api, api.admin, seller.name, show_deleted=True)) == 3
    await expect(CODE.PERMISSION_DENIED, listed(api, stranger, seller.name, show_deleted=True), "NOT_OWNER")


async def test_bad_owners_tokens_and_anonymous_callers_are_refused(market: Api):
    api = market
    seller = await api.signup("Seller")
    await business(api, seller)
    for owner in ("", "users/", "businesses/x", f"users/{seller.user_id}/x", "users/not-an-id"):
        await expect(CODE.INVALID_ARGUMENT, api.marketplace.ListBusinesses(
            m.ListBusinessesRequest(owner=owner), metadata=seller.md))
    await expect(CODE.INVALID_ARGUMENT, api.marketplace.ListBusinesses(
        m.ListBusinessesRequest(owner="users/me", page_size=-1), metadata=seller.md))
    first = await api.marketplace.ListBusinesses(m.ListBusinessesRequest(owner="users/me", page_size=1),
                                                 metadata=seller.md)
    assert first.next_page_token == ""  # one business, one page
    await business(api, seller)
    first = await api.marketplace.ListBusinesses(m.ListBusinessesRequest(owner="users/me", page_size=1),
                                                 metadata=seller.md)
    # A token is bound to its request's filters.
    await expect(CODE.INVALID_ARGUMENT, api.marketplace.ListBusinesses(m.ListBusinessesRequest(
        owner="users/me", page_size=1, page_token=first.next_page_token, show_deleted=True), metadata=seller.md))
    await expect(CODE.UNAUTHENTICATED, api.marketplace.ListBusinesses(m.ListBusinessesRequest(owner="users/me")))
