"""What staff see of an account in the services that own it: its sessions (auth) and its pets (pet),
asked with the staff member's own token, so each service applies its own staff rules (auth lists another
account's sessions, the pet service shows held and hidden pets, to ACCESS_SUPPORT only)."""
from __future__ import annotations

import logging

import grpc

from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc

log = logging.getLogger(__name__)

PEER_DEADLINE_SECONDS = 2.0
LISTINGS = 50  # a record shows the first page; the pet service's ListPets pages the rest


async def sessions_of(channel: grpc.aio.Channel, *, user: str, token: str) -> list[auth_pb2.Session] | None:
    """The account's live sessions; None when auth cannot say now (down, slow, or refusing)."""
    try:
        return list((await auth_pb2_grpc.AuthServiceStub(channel).ListSessions(
            auth_pb2.ListSessionsRequest(parent=user), timeout=PEER_DEADLINE_SECONDS,
            metadata=(("authorization", token),))).sessions)
    except grpc.aio.AioRpcError as e:
        log.warning("auth's ListSessions failed for a user record: %s %s", e.code().name, e.details())
        return None


async def listings_of(channel: grpc.aio.Channel, *, user: str, token: str) -> list[pet_pb2.Pet] | None:
    """The account's pets as staff see them; None when the pet service cannot say now."""
    try:
        return list((await pet_pb2_grpc.PetServiceStub(channel).ListPets(
            pet_pb2.ListPetsRequest(owner=user, page_size=LISTINGS), timeout=PEER_DEADLINE_SECONDS,
            metadata=(("authorization", token),))).pets)
    except grpc.aio.AioRpcError as e:
        log.warning("the pet service's ListPets failed for a user record: %s %s", e.code().name, e.details())
        return None
