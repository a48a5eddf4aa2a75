"""Request ids: unique and time-ordered in a process, and a forked worker's never collide with
its parent's (each process draws its own tag, without a syscall per request)."""

from __future__ import annotations

import os

from oneplan.protocols.openai_chat import OpenAIChat
from oneplan.server.ids import new_id

PROTOCOL = OpenAIChat()


def test_ids_are_unique_and_grow_in_one_process() -> None:
    ids = [new_id(PROTOCOL) for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith(PROTOCOL.id_prefix) for i in ids)
    stamps = [int(i[len(PROTOCOL.id_prefix):-12], 16) for i in ids]
    assert stamps == sorted(stamps)


def test_a_forked_worker_draws_its_own_tag() -> None:
    parent = new_id(PROTOCOL)[-12:-4]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its tag and leave without running pytest's teardown
        try:
            os.write(write, new_id(PROTOCOL)[-12:-4].encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 8 and child != parent
    assert new_id(PROTOCOL)[-12:-4] == parent  # the parent keeps its own
