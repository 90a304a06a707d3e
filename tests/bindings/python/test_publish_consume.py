# SPDX-License-Identifier: LGPL-2.1-or-later
"""Publishing and consuming through the override."""
import asyncio

import pytest
from conftest import unique
from gi.repository import Carehare as carehare
from gi.repository import Gio, GLib


async def test_publish_to_missing_exchange(connection):
    with pytest.raises(carehare.ChannelClosedByServer) as cm:
        await connection.publish(b"x", exchange_name=unique("missing"))
    assert cm.value.reply_code == 404
    assert "RabbitMQ closed the channel: 404 NOT_FOUND" in str(cm.value)
    # The connection goes on.
    assert await connection.queue_declare("", exclusive=True)


async def test_publish_after_the_server_closed_the_publish_channel(connection):
    # The 404 closes the channel publishes go through; the next publish,
    # once the exchange exists, goes through a new one.
    exchange = unique("later")
    with pytest.raises(carehare.ChannelClosedByServer):
        await connection.publish(b"foo", exchange_name=exchange)
    await connection.exchange_declare(exchange, exchange_type="direct", auto_delete=False)
    try:
        await connection.publish(b"foo", exchange_name=exchange)
    finally:
        await connection.exchange_delete(exchange)


async def test_publish_and_consume(connection):
    queue = await connection.queue_declare("", exclusive=True)
    await connection.publish(b"foo", routing_key=queue)
    await connection.publish(b"bar", routing_key=queue)
    received = []
    async with connection.acking_consumer(queue) as consumer:
        async for message in consumer:
            assert isinstance(message, bytes)
            received.append(message)
            if len(received) == 2:
                consumer.close()  # not awaited: the loop then ends
    assert received == [b"foo", b"bar"]
    # foo was acked when the loop went on; bar was not, the consumer having
    # been closed first: it went back to the queue.
    assert await connection.queue_purge(queue) == 1


async def test_publish_and_consume_empty_message(connection):
    queue = await connection.queue_declare("", exclusive=True)
    await connection.publish(b"", routing_key=queue)
    async with connection.acking_consumer(queue) as consumer:
        assert await consumer.next_delivery() == (b"", 1)


async def test_publish_and_consume_large_message(connection):
    # Many frames each way (frame_max is 128 KiB).
    message = bytes(range(256)) * 4096 + b"end"
    queue = await connection.queue_declare("", exclusive=True)
    await connection.publish(message, routing_key=queue)
    async with connection.acking_consumer(queue) as consumer:
        assert await consumer.next_delivery() == (message, 1)


async def test_publishes_send_at_once_and_keep_their_order(connection):
    queue = await connection.queue_declare("", exclusive=True)
    # Every publish is on the wire before the first is awaited.
    futures = [connection.publish(str(i).encode(), routing_key=queue) for i in range(200)]
    assert all(isinstance(f, asyncio.Future) for f in futures)
    await asyncio.gather(*futures)
    async with connection.acking_consumer(queue, prefetch_count=50) as consumer:
        for i in range(200):
            message, tag = await consumer.next_delivery()
            assert message == str(i).encode()
            consumer.ack(tag)


async def test_cancelling_a_publish_stops_waiting_but_still_publishes(connection):
    queue = await connection.queue_declare("", exclusive=True)
    # Connection.publish() passes no GCancellable: cancelling its future
    # stops waiting for the confirm, the message is published all the same.
    future = connection.publish(b"cancelled", routing_key=queue)
    assert future.cancel()
    assert future.cancelled()
    # One channel, in call order: once this one is confirmed, the
    # cancelled one is in the queue.
    await connection.publish(bytearray(b"after"), routing_key=queue)
    async with connection.acking_consumer(queue, prefetch_count=2) as consumer:
        assert (await consumer.next_delivery())[0] == b"cancelled"
        assert (await consumer.next_delivery())[0] == b"after"


async def test_publish_futures_are_independent(connection):
    # One callback serves every publish: each future gets its own outcome.
    queue = await connection.queue_declare(
        "", exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    results = await asyncio.gather(connection.publish(b"a", routing_key=queue),
                                   connection.publish(memoryview(b"b"), routing_key=queue),
                                   connection.publish(b"c", routing_key=queue,
                                                      properties={"message_id": "c"}),
                                   return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], carehare.ServerSentNack)
    assert isinstance(results[2], carehare.ServerSentNack)


async def test_publish_settles_every_future_and_keeps_none(connection):
    # publish() takes publish_tracked(): one ::publishes-confirmed per read
    # settles many futures, a failure its own; none is kept afterwards.
    queue = await connection.queue_declare("", exclusive=True)
    futures = [connection.publish(b"m", routing_key=queue) for _ in range(300)]
    futures.append(connection.publish(b"m", exchange_name=unique("missing")))
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[:300] == [None] * 300
    assert isinstance(results[300], carehare.ChannelClosedByServer)
    assert connection._carehare_tracked == {}
    assert await connection.queue_purge(queue) == 300


async def test_publish_from_another_threads_loop(connection):
    # A plain asyncio loop in a worker thread publishes on the connection
    # the main loop runs: the outcomes are announced on the connection's
    # context (this thread), and each future is settled on its own loop.
    import threading

    queue = await connection.queue_declare("", exclusive=True)
    outcome = {}

    async def worker():
        await asyncio.wait_for(
            asyncio.gather(*(connection.publish(b"w", routing_key=queue) for _ in range(20))), 10)
        with pytest.raises(carehare.ChannelClosedByServer):
            await asyncio.wait_for(connection.publish(b"w", exchange_name=unique("missing")), 10)

    def run():
        try:
            asyncio.new_event_loop().run_until_complete(worker())
            outcome["ok"] = True
        except BaseException as e:  # reported by the assertion below
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.01)
    thread.join()
    assert outcome == {"ok": True}
    assert await connection.queue_purge(queue) == 20


async def test_publish_tracked_from_python(connection):
    # The GI surface itself: an id per publish, the ids of one read as a
    # list from take_confirmed(), a failure with its id and GLib.Error.
    queue = await connection.queue_declare("", exclusive=True)
    loop = asyncio.get_running_loop()
    confirmed = []
    failed = loop.create_future()
    done = loop.create_future()
    body = GLib.Bytes.new(b"tracked")

    def on_confirmed(conn):
        ids = conn.take_confirmed()
        assert all(isinstance(i, int) for i in ids)
        confirmed.extend(ids)
        assert conn.take_confirmed() == []
        if len(confirmed) == 10 and not done.done():
            done.set_result(None)

    handlers = [connection.connect("publishes-confirmed", on_confirmed),
                connection.connect("publish-failed",
                                   lambda conn, i, e: failed.set_result((i, e)))]
    try:
        ids = [connection.publish_tracked("", queue, body, None, carehare.PublishFlags.NONE)
               for _ in range(10)]
        assert ids == list(range(ids[0], ids[0] + 10))
        await asyncio.wait_for(done, 30)
        assert confirmed == ids
        bad = connection.publish_tracked(unique("missing"), "k", body, None,
                                         carehare.PublishFlags.NONE)
        publish_id, error = await asyncio.wait_for(failed, 30)
        assert publish_id == bad
        assert error.matches(carehare.error_quark(), carehare.Error.CHANNEL_CLOSED_BY_SERVER)
    finally:
        for handler in handlers:
            connection.disconnect(handler)


async def test_consume_missing_queue(connection):
    with pytest.raises(carehare.ChannelClosedByServer) as cm:
        async with connection.acking_consumer(unique("missing")):
            pass
    assert "404 NOT_FOUND" in str(cm.value)


async def test_consume_connection_closed(url):
    connection = await carehare.connect(url)
    queue = await connection.queue_declare("", exclusive=True)
    with pytest.raises(carehare.ConnectionClosed):
        async with connection.acking_consumer(queue) as consumer:
            closing = asyncio.ensure_future(connection.close())
            async for _message in consumer:
                pass
    await closing


async def test_consume_close_many_times(connection):
    queue = await connection.queue_declare("", exclusive=True)
    async with connection.acking_consumer(queue) as consumer:
        first = consumer.close()
        consumer.close()
        await consumer.close()
        assert first.done()


async def test_consume_close_during_ack(connection):
    queue = await connection.queue_declare("", exclusive=True)
    await connection.publish(b"foo", routing_key=queue)
    await connection.publish(b"bar", routing_key=queue)
    async with connection.acking_consumer(queue) as consumer:
        async for message in consumer:
            assert message == b"foo"
            consumer.close()  # closed before the ack: foo comes back

    seen = []
    async with connection.acking_consumer(queue) as consumer:
        async for message in consumer:
            seen.append(message)
            if len(seen) == 2:
                consumer.close()
    assert seen == [b"foo", b"bar"]


async def test_exception_in_loop_leaves_message_unacked(connection):
    queue = await connection.queue_declare("", exclusive=True)
    await connection.publish(b"foo", routing_key=queue)
    with pytest.raises(ZeroDivisionError):
        async with connection.acking_consumer(queue) as consumer:
            async for _message in consumer:
                1 / 0
    async with connection.acking_consumer(queue) as consumer:
        async for delivery in consumer.deliveries():
            assert isinstance(delivery, carehare.Delivery)
            assert delivery.get_body().get_data() == b"foo"
            assert delivery.get_redelivered()
            consumer.ack(delivery.get_delivery_tag())
            break
    assert await connection.queue_purge(queue) == 0


async def test_break_leaves_message_unacked(connection):
    queue = await connection.queue_declare("", exclusive=True)
    await connection.publish(b"foo", routing_key=queue)
    async with connection.acking_consumer(queue) as consumer:
        async for _message in consumer:
            break
    async with connection.acking_consumer(queue) as consumer:
        message, tag = await consumer.next_delivery()
        assert message == b"foo"
        consumer.ack(tag)


async def test_publish_connection_closed(connection):
    queue = await connection.queue_declare("", exclusive=True)
    closing = connection.close()  # starts closing at once: not a coroutine
    with pytest.raises(carehare.ConnectionClosed):
        await connection.publish(b"bar", routing_key=queue)
    await closing


async def test_publish_after_disconnect(connection):
    await connection.close()
    with pytest.raises(carehare.ConnectionClosed):
        await connection.publish(b"foo", routing_key="messages")


async def test_publish_nack(connection):
    queue = await connection.queue_declare(
        "", exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    await connection.publish(b"foo", routing_key=queue)
    with pytest.raises(carehare.ServerSentNack):
        await connection.publish(b"bar", routing_key=queue)


async def test_publish_unroutable_mandatory(connection):
    with pytest.raises(carehare.Unroutable) as caught:
        await connection.publish(b"lost", routing_key=unique("nowhere"), mandatory=True)
    assert caught.value.reply_code == 312
    assert caught.value.reply_text.startswith("NO_ROUTE")
    # Without mandatory the broker drops it and confirms.
    await connection.publish(b"lost", routing_key=unique("nowhere"))


async def test_cancelled_next_delivery_loses_no_message(connection):
    # A next_delivery() cancelled at once, while a message waits in the
    # consumer, is handed that message all the same (the library never
    # loses one handed over): the override gives it back (nack, requeue),
    # so it is delivered again instead of being held unacked for good.
    queue = await connection.queue_declare("", exclusive=True)
    for body in (b"m1", b"m2", b"m3"):
        await connection.publish(body, routing_key=queue)
    async with connection.acking_consumer(queue, prefetch_count=10) as consumer:
        message, tag = await consumer.next_delivery()
        received = {message}
        consumer.ack(tag)
        # Let m2 and m3 reach the consumer's buffer (not a timing: the test
        # holds either way).
        await asyncio.sleep(0.2)
        future = consumer.next_delivery()
        future.cancel()
        while received != {b"m1", b"m2", b"m3"}:
            message, tag = await consumer.next_delivery()
            consumer.ack(tag)
            received.add(message)


async def test_consume_ack(connection):
    queue = await connection.queue_declare(
        "", exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    async with connection.acking_consumer(queue, prefetch_count=1) as consumer:
        await connection.publish(b"foo", routing_key=queue)
        message, tag = await consumer.next_delivery()
        assert message == b"foo"
        assert consumer.ack(tag) is None
        # The ack went out before this publish: the queue has room again.
        await connection.publish(b"bar", routing_key=queue)
        message, _tag = await consumer.next_delivery()
        assert message == b"bar"


async def test_ack_up_to(connection):
    queue = await connection.queue_declare("", exclusive=True)
    await asyncio.gather(*(connection.publish(b"%d" % i, routing_key=queue) for i in range(3)))
    async with connection.acking_consumer(queue, prefetch_count=3) as consumer:
        tags = [(await consumer.next_delivery())[1] for _ in range(3)]
        consumer.ack_up_to(tags[-1])
    assert await connection.queue_purge(queue) == 0


async def test_close_consumer_during_next_delivery(connection):
    queue = await connection.queue_declare("", exclusive=True)
    async with connection.acking_consumer(queue) as consumer:
        task = asyncio.ensure_future(consumer.next_delivery())
        await asyncio.sleep(0)
    with pytest.raises(carehare.ChannelClosed):
        await task


async def test_consumer_cancelled_by_server_is_an_error(connection):
    queue = await connection.queue_declare(unique("cancelled"), auto_delete=False)
    with pytest.raises(carehare.ChannelClosedByServer):
        async with connection.acking_consumer(queue) as consumer:
            deleting = connection.queue_delete(queue)
            async for _message in consumer:
                pass
    await deleting


async def test_exclusive_consumer_and_tag(connection):
    queue = await connection.queue_declare("", exclusive=True)
    async with connection.acking_consumer(queue, exclusive=True, consumer_tag="only-one",
                                          arguments={"x-priority": 5}) as consumer:
        assert consumer.get_consumer_tag() == "only-one"
        with pytest.raises(carehare.ChannelClosedByServer) as cm:
            async with connection.acking_consumer(queue):
                pass
        assert cm.value.reply_code == 403


async def test_publish_on_exchange(connection):
    exchange = unique("x")
    await connection.exchange_declare(exchange_name=exchange, exchange_type="direct",
                                      auto_delete=True)
    queue = await connection.queue_declare("", exclusive=True)
    await connection.queue_bind(queue, exchange, routing_key="bar")
    await connection.publish(b"bar", exchange_name=exchange, routing_key="bar")
    async with connection.acking_consumer(queue) as consumer:
        async for message in consumer:
            assert message == b"bar"
            break
    await connection.exchange_delete(exchange)


async def test_publish_on_exchange_after_unbind(connection):
    exchange = unique("x")
    await connection.exchange_declare(exchange, exchange_type="direct")
    queue = await connection.queue_declare("", exclusive=True)
    await connection.queue_bind(queue, exchange, routing_key="bar")
    await connection.queue_unbind(queue, exchange, routing_key="bar")
    # Routed nowhere now: a mandatory publish comes back.
    with pytest.raises(carehare.Unroutable):
        await connection.publish(b"bar", exchange_name=exchange, routing_key="bar",
                                 mandatory=True)
    await connection.exchange_delete(exchange)


async def test_properties_and_headers(connection):
    queue = await connection.queue_declare("", exclusive=True)
    await connection.publish(b"{}", routing_key=queue, properties={
        "content_type": "application/json",
        "delivery_mode": 2,
        "headers": {"retries": 3, "trace": ["a", b"b"], "nested": {"ok": True}},
    })
    async with connection.acking_consumer(queue) as consumer:
        async for delivery in consumer.deliveries():
            props = delivery.get_properties()
            assert props.props.content_type == "application/json"
            assert props.props.delivery_mode == 2
            headers = props.props.headers.unpack()
            assert headers["retries"] == 3
            assert headers["trace"][0] == "a"
            assert bytes(headers["trace"][1]) == b"b"  # a byte array
            assert headers["nested"] == {"ok": True}
            consumer.ack(delivery.get_delivery_tag())
            break


async def test_async_for_many_in_order(connection):
    """`async for` takes every message in order through ::delivery (one
    handler call per message) and acks each as the loop goes on."""
    queue = await connection.queue_declare("", exclusive=True)
    sent = [b"m%d" % i for i in range(200)]
    for body in sent:
        await connection.publish(body, routing_key=queue)
    received = []
    async with connection.acking_consumer(queue, prefetch_count=50) as consumer:
        async for message in consumer:
            received.append(message)
            if len(received) == len(sent):
                break
        # The loop is over: the handler is gone, next_delivery works again.
        await connection.publish(b"after", routing_key=queue)
        message, tag = await consumer.next_delivery()
        assert message == b"after"
        consumer.ack(tag)
    assert received == sent
    # Every message was acked but the last one, the loop having ended on it.
    assert await connection.queue_purge(queue) == 1


async def test_break_gives_back_what_was_not_taken(connection):
    """Messages received but not yet taken when the loop ends go back to
    the queue; the same consumer gets them again with next_delivery."""
    queue = await connection.queue_declare("", exclusive=True)
    for body in (b"foo", b"bar", b"baz"):
        await connection.publish(body, routing_key=queue)
    async with connection.acking_consumer(queue, prefetch_count=10) as consumer:
        async for message in consumer:
            assert message == b"foo"
            # bar and baz have arrived (prefetch 10) by the time a ping
            # comes back: they are in the loop's hands.
            await connection.queue_declare(queue, passive=True)
            break
        again = []
        for _ in range(2):
            message, tag = await consumer.next_delivery()
            again.append(message)
            consumer.ack(tag)
        assert sorted(again) == [b"bar", b"baz"]
    assert await connection.queue_purge(queue) == 1  # foo, never acked


async def test_delivery_signal(connection):
    """The signal itself: a handler gets each Carehare.Delivery, and
    next_delivery fails with BUSY while it is connected."""
    queue = await connection.queue_declare("", exclusive=True)
    for body in (b"one", b"two"):
        await connection.publish(body, routing_key=queue)
    received = []
    done = asyncio.get_event_loop().create_future()

    def on_delivery(consumer, delivery):
        received.append(delivery.get_body().get_data())
        consumer.ack(delivery.get_delivery_tag())
        if len(received) == 2 and not done.done():
            done.set_result(None)

    async with connection.acking_consumer(queue, prefetch_count=10) as consumer:
        handler = consumer.connect("delivery", on_delivery)
        await done
        with pytest.raises(GLib.Error) as cm:
            await consumer.next_delivery()
        assert cm.value.matches(Gio.io_error_quark(), Gio.IOErrorEnum.BUSY)
        consumer.disconnect(handler)
    assert received == [b"one", b"two"]
    assert await connection.queue_purge(queue) == 0


async def test_pending_write_bytes_rises_and_drains(connection):
    high = carehare.CONNECTION_WRITE_HIGH_WATER_MARK
    low = carehare.CONNECTION_WRITE_LOW_WATER_MARK
    key = unique("nowhere")  # bound to nothing: confirmed and dropped
    # The publisher's channel opens first, so what follows goes straight
    # into the output.
    await connection.publish(b"first", exchange_name="amq.direct", routing_key=key)
    assert connection.props.pending_write_bytes == 0
    seen = []
    connection.connect("notify::pending-write-bytes",
                       lambda conn, _pspec: seen.append(conn.props.pending_write_bytes))
    # 8 MiB without a main-loop turn: the socket takes at most the first
    # write's worth, the rest waits.
    body = bytes(1024 * 1024)
    futures = [connection.publish(body, exchange_name="amq.direct", routing_key=key)
               for _ in range(8)]
    assert connection.get_pending_write_bytes() > high
    assert len(seen) == 1 and seen[0] > high
    await asyncio.gather(*futures)
    assert len(seen) == 2 and seen[1] <= low
    assert connection.props.pending_write_bytes == 0
