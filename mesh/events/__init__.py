"""The events port: transactional outbox -> relay -> bus (RabbitMQ or in-process) -> idempotent inbox.
Events are typed: the routing key comes from the payload message's contract (types.py)."""
from mesh.events.bus import Bus, Handler, InProcessBus
from mesh.events.inbox import Effect, Effects, Outside, current_event, inbox_handler, subscribe
from mesh.events.outbox import (OutboxNotices, Relay, UndeclaredEvent, emit, event_table_names, event_tables,
                                migrate_event_tables, producer)
from mesh.events.types import PoisonEvent, event_type, unpack

__all__ = ["Bus", "Effect", "Effects", "Handler", "InProcessBus", "OutboxNotices", "Outside", "PoisonEvent",
           "Relay", "UndeclaredEvent", "current_event", "emit", "event_table_names", "event_tables", "event_type",
           "inbox_handler", "migrate_event_tables", "producer", "subscribe", "unpack"]
