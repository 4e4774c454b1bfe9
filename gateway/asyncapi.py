"""AsyncAPI 3.0 document of the events, generated from the contracts as /openapi.json is for REST:
one channel per routing key on the topic exchange, its payload's schema, and who sends and who
receives it."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from google.protobuf.message import Message

from gateway.openapi import Schemas, comments, first_sentence, message_descriptor
from petplatform.common.v1 import event_pb2


@dataclasses.dataclass(frozen=True, kw_only=True)
class EventChannel:
    routing_key: str
    payload: type[Message]
    producers: Sequence[str]
    consumers: Sequence[str]


def document(channels: Sequence[EventChannel], *, exchange: str) -> dict:
    schemas = Schemas()
    envelope = event_pb2.EventEnvelope.DESCRIPTOR
    out_channels: dict[str, dict] = {}
    messages: dict[str, dict] = {}
    operations: dict[str, dict] = {}
    for c in channels:
        d = message_descriptor(c.payload)
        doc = comments().get(d.full_name, "")
        messages[d.full_name] = {
            "name": d.name, "title": d.full_name, "summary": first_sentence(doc),
            "description": f"{doc}\n\nOn the wire: a {envelope.full_name} (protobuf binary) whose `payload` "
                           f"is this message packed as google.protobuf.Any; the schema shows its proto3 JSON form.",
            "contentType": "application/x-protobuf",
            "payload": schemas.ref(d),
            "bindings": {"amqp": {"messageType": c.routing_key, "deliveryMode": 2}},
        }
        out_channels[c.routing_key] = {
            "address": c.routing_key,
            "description": first_sentence(doc),
            "messages": {d.name: {"$ref": f"#/components/messages/{d.full_name}"}},
            "bindings": {"amqp": {"is": "routingKey", "exchange": {
                "name": exchange, "type": "topic", "durable": True, "autoDelete": False}}},
            "x-producers": list(c.producers),
            "x-consumers": list(c.consumers),
        }
        ref = {"$ref": f"#/channels/{c.routing_key}"}
        for action, services in (("send", c.producers), ("receive", c.consumers)):
            for service in services:
                operations[f"{service}.{action}.{c.routing_key}"] = {
                    "action": action, "channel": ref, "tags": [{"name": service}],
                    "summary": f"{service} {'publishes' if action == 'send' else 'consumes'} {c.routing_key}",
                }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Pet Platform events", "version": "v1",
                 "description": "Events between the Pet Platform services over RabbitMQ: written to the producer's "
                                "outbox in the transaction of the change, published with confirms, applied once "
                                "per consumer (inbox). Generated from the contracts' events.proto files."},
        "defaultContentType": "application/x-protobuf",
        "channels": out_channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas.components},
    }
