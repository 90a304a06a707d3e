# SPDX-License-Identifier: LGPL-2.1-or-later
"""Declaring, binding and deleting through the override."""
import asyncio

import pytest
from conftest import unique
from gi.repository import Carehare as carehare
from gi.repository import GLib


async def test_queue_declare(connection):
    name = unique()
    assert await connection.queue_declare(name, exclusive=True) == name
    # The server names it when the name is empty.
    assert (await connection.queue_declare("", exclusive=True)).startswith("amq.gen-")


async def test_queue_declare_not_ok(connection, url):
    queue = await connection.queue_declare(unique(), exclusive=True)
    async with carehare.connect(url) as other:
        with pytest.raises(carehare.ChannelClosedByServer) as cm:
            await other.queue_declare(queue)
        assert cm.value.reply_code == 405
        assert "405 RESOURCE_LOCKED" in str(cm.value)


async def test_multiple_rpcs(connection):
    names = [unique() for _ in range(5)]
    futures = [connection.queue_declare(name, exclusive=True) for name in names]
    # Futures, not coroutines: each was sent when called.
    assert all(isinstance(f, asyncio.Future) for f in futures)
    assert await asyncio.gather(*futures) == names


async def test_queue_bind_unbind(connection):
    queue = await connection.queue_declare("", exclusive=True)
    await connection.queue_bind(queue, "amq.direct", routing_key=queue)
    await connection.publish(b"bound", exchange_name="amq.direct", routing_key=queue,
                             mandatory=True)
    await connection.queue_unbind(queue, "amq.direct", routing_key=queue)
    with pytest.raises(carehare.Unroutable):
        await connection.publish(b"unbound", exchange_name="amq.direct", routing_key=queue,
                                 mandatory=True)


async def test_queue_declare_connection_closed(connection):
    await connection.close()
    with pytest.raises(carehare.ConnectionClosed):
        await connection.queue_declare(unique())


async def test_queue_purge_and_delete_count(connection):
    queue = await connection.queue_declare(unique(), auto_delete=False)
    await asyncio.gather(*(connection.publish(b"m", routing_key=queue) for _ in range(3)))
    assert await connection.queue_purge(queue) == 3
    await connection.publish(b"m", routing_key=queue)
    with pytest.raises(carehare.ChannelClosedByServer) as cm:
        await connection.queue_delete(queue, if_empty=True)
    assert cm.value.reply_code == 406
    assert await connection.queue_delete(queue) == 1


async def test_arguments_from_dict(connection):
    queue = await connection.queue_declare(unique(), exclusive=True, arguments={
        "x-message-ttl": 60000, "x-queue-mode": "default", "x-max-length": 10})
    # The same arguments again are equivalent; another TTL is not.
    await connection.queue_declare(queue, exclusive=True, arguments={
        "x-message-ttl": GLib.Variant("x", 60000), "x-queue-mode": "default",
        "x-max-length": 10})
    with pytest.raises(carehare.ChannelClosedByServer) as cm:
        await connection.queue_declare(queue, exclusive=True, arguments={"x-message-ttl": 1})
    assert cm.value.reply_code == 406
    with pytest.raises(TypeError):
        connection.queue_declare(unique(), arguments={"x-bad": object()})


async def test_exchange_declare_passive_and_delete(connection):
    exchange = unique("x")
    with pytest.raises(carehare.ChannelClosedByServer):
        await connection.exchange_declare(exchange, passive=True)
    await connection.exchange_declare(exchange, exchange_type="fanout", durable=False)
    await connection.exchange_declare(exchange, passive=True)
    await connection.exchange_delete(exchange)
    with pytest.raises(carehare.ChannelClosedByServer) as cm:
        await connection.exchange_declare(exchange, passive=True)
    assert cm.value.reply_code == 404


async def test_call_gets_the_reply(connection, url):
    queue = await connection.queue_declare(unique("rpc"), exclusive=True)
    async with carehare.connect(url) as server_connection:
        async with connection.acking_consumer(queue) as server:
            calling = connection.call(b"ping", routing_key=queue,
                                      properties={"correlation_id": "c-1"})
            async for request in server.deliveries():
                props = request.get_properties()
                assert request.get_body().get_data() == b"ping"
                assert props.props.correlation_id == "c-1"
                await server_connection.publish(
                    b"pong", routing_key=props.props.reply_to,
                    properties={"correlation_id": props.props.correlation_id})
                server.ack(request.get_delivery_tag())
                break
            reply = await calling
    assert reply.get_body().get_data() == b"pong"
    with pytest.raises(carehare.Unroutable):
        await connection.call(b"nobody", routing_key=unique("none"), mandatory=True)
