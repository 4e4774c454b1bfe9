"""Events as types: a payload message names its routing key in its contract, with the
(petplatform.common.v1.event_type) option, so `emit(session, PetCreated(...))` and
`{PetCreated: handler}` never repeat the string."""
from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TypeVar

from google.protobuf import descriptor
from google.protobuf.message import Message

from petplatform.common.v1 import event_pb2

M = TypeVar("M", bound=Message)


class PoisonEvent(Exception):
    """The body is not an event this consumer can ever process."""


@functools.cache
def _routing_key(message: descriptor.Descriptor) -> str:
    # The generated stubs type an extension as a plain FieldDescriptor, which the Extensions stub refuses.
    key: str = message.GetOptions().Extensions[event_pb2.event_type]  # type: ignore[index]
    if not key:
        raise TypeError(f"{message.full_name} is not an event: it has no (petplatform.common.v1.event_type) option")
    return key


def event_type(event: Message | type[Message]) -> str:
    """The routing key of an event message or class, e.g. "pet.created"."""
    return _routing_key(event.DESCRIPTOR)


def unpack(envelope: event_pb2.EventEnvelope, kinds: Iterable[type[M]]) -> M:
    """The envelope's payload as the one of `kinds` its type names; PoisonEvent if none fits."""
    for kind in kinds:
        if event_type(kind) == envelope.type:
            payload = kind()
            if envelope.payload.Unpack(payload):
                return payload
            raise PoisonEvent(f"{envelope.type} {envelope.id}: payload is {envelope.payload.type_url}")
    raise PoisonEvent(f"{envelope.type} {envelope.id}: not an event this consumer takes")
