"""The worker thread's events reach a stream's event loop in batches: one wake-up per batch."""

from __future__ import annotations

import asyncio
import threading

from oneplan.local.engine import Mailbox


def test_events_of_many_streams_are_delivered_by_one_wake_up() -> None:
    async def main() -> None:
        box = Mailbox(asyncio.get_running_loop())
        queues: list[asyncio.Queue[tuple[str, object]]] = [asyncio.Queue() for _ in range(8)]

        def worker() -> None:  # one decode step: a token for each of eight streams
            for i, queue in enumerate(queues):
                assert box.post(queue, ("token", i))

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()  # the loop is blocked here: nothing is delivered yet, one drain is pending
        assert box.scheduled and len(box.items) == 8 and all(q.empty() for q in queues)
        await asyncio.sleep(0)  # the loop runs its callbacks once
        assert not box.scheduled and not box.items
        assert [q.get_nowait() for q in queues] == [("token", i) for i in range(8)]
        assert box.post(queues[0], ("done", "stop"))  # the next batch schedules its own drain
        assert box.scheduled
        await asyncio.sleep(0)
        assert queues[0].get_nowait() == ("done", "stop")

    asyncio.run(main())


def test_a_closed_loop_refuses_events() -> None:
    loop = asyncio.new_event_loop()
    box = Mailbox(loop)
    loop.close()
    assert not box.post(asyncio.Queue(), ("token", 1))
