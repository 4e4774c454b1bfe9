"""RabbitMQ bus: a topic exchange, persistent messages with publisher confirms, one durable quorum
queue per consumer with a delivery limit, and a dead-letter queue per consumer."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from mesh.events.bus import DEAD_LETTERED, MAX_DELIVERIES, PREFETCH, Handler
from mesh.events.types import PoisonEvent

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 10.0


class RabbitBus:
    def __init__(self, url: str, exchange: str = "petplatform.events", *, queue_prefix: str = ""):
        self._url = url
        self._exchange_name = exchange
        self._prefix = queue_prefix
        self._conn: AbstractRobustConnection | None = None
        self.consumers: list[str] = []

    async def start(self) -> None:
        self._conn = await aio_pika.connect_robust(self._url)
        self._channel = await self._conn.channel(publisher_confirms=True)
        self._exchange = await self._channel.declare_exchange(
            self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        self._dlx = await self._channel.declare_exchange(
            f"{self._exchange_name}.dlx", aio_pika.ExchangeType.DIRECT, durable=True)

    async def publish(self, event_type: str, body: bytes, message_id: str) -> None:
        message = aio_pika.Message(body, message_id=message_id, content_type="application/x-protobuf",
                                   type=event_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        # With confirms on, publish() returns only once the broker has taken the message; it raises on
        # a nack, a closed channel or the timeout, and the outbox row then stays pending.
        await self._exchange.publish(message, routing_key=event_type, timeout=PUBLISH_TIMEOUT)

    @property
    def _connection(self) -> AbstractRobustConnection:
        if self._conn is None:
            raise RuntimeError("RabbitBus.start() was not called")
        return self._conn

    def _queue_name(self, consumer: str) -> str:
        return f"{self._prefix}{consumer}"

    async def subscribe(self, consumer: str, event_types: list[str], handler: Handler) -> None:
        name = self._queue_name(consumer)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        dlq = await channel.declare_queue(f"{name}.dlq", durable=True, arguments={"x-queue-type": "quorum"})
        dlx = await channel.get_exchange(f"{self._exchange_name}.dlx")
        await dlq.bind(dlx, routing_key=name)
        queue = await channel.declare_queue(name, durable=True, arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": MAX_DELIVERIES,
            "x-dead-letter-exchange": f"{self._exchange_name}.dlx",
            "x-dead-letter-routing-key": name,
        })
        for t in event_types:
            await queue.bind(self._exchange_name, routing_key=t)

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                await handler(message.body)
            except PoisonEvent:
                log.exception("consumer %s cannot ever take %s %s", consumer, message.type, message.message_id)
                await message.reject(requeue=False)  # straight to the dead-letter queue: retrying cannot help
                DEAD_LETTERED.labels(consumer).inc()
            except Exception:
                log.exception("consumer %s failed on %s %s", consumer, message.type, message.message_id)
                await message.nack(requeue=True)  # the broker dead-letters it after x-delivery-limit
                # x-delivery-count: the earlier failed deliveries; past the limit this failure parks it.
                if int(message.headers.get("x-delivery-count") or 0) >= MAX_DELIVERIES:  # type: ignore[arg-type]
                    DEAD_LETTERED.labels(consumer).inc()
            else:
                await message.ack()

        await queue.consume(on_message)
        self.consumers.append(consumer)

    async def subscribe_broadcast(self, event_types: list[str], handler: Handler,
                                  on_gap: Callable[[], None] | None = None) -> None:
        channel = await self._connection.channel()
        if on_gap is not None:
            # The queue died with the old connection, and with it what was published meanwhile.
            self._connection.reconnect_callbacks.add(lambda _connection: on_gap())
        # Named by us, not by the broker, so the robust connection can declare it again after a reconnect.
        queue = await channel.declare_queue(f"{self._prefix}broadcast.{uuid.uuid4().hex}", exclusive=True,
                                            auto_delete=True)
        for t in event_types:
            await queue.bind(self._exchange_name, routing_key=t)

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                await handler(message.body)
            except Exception:
                log.exception("broadcast handler failed on %s %s; dropped", message.type, message.message_id)

        await queue.consume(on_message, no_ack=True)

    async def dead_letters(self, consumer: str) -> list[bytes]:
        channel = await self._connection.channel()
        try:
            queue = await channel.declare_queue(f"{self._queue_name(consumer)}.dlq", passive=True)
            bodies, held = [], []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                bodies.append(message.body)
                held.append(message)
            for m in held:
                await m.nack(requeue=True)  # looking is not consuming
            return bodies
        finally:
            await channel.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn:
            await conn.close()
