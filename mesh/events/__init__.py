"""The events port: transactional outbox -> relay -> bus (RabbitMQ or in-process) -> idempotent inbox."""
from mesh.events.bus import Bus, Handler, InProcessBus
from mesh.events.outbox import Relay, emit, event_tables
from mesh.events.inbox import inbox_handler

__all__ = ["Bus", "Handler", "InProcessBus", "Relay", "emit", "event_tables", "inbox_handler"]
