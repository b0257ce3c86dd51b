"""The claims (issue 29): each connection is started by the loop or handed back by the
thread, never both, and a handed-back connection is never read."""

from __future__ import annotations

import random
import sys
import threading
import time

import pytest

from gunicorn_prefork.worker.claims import HANDED, NOTHING, STARTED, WAITING, Claim, Claims


def test_offered_connections_are_handed_back_oldest_first_up_to_the_limit() -> None:
    claims = Claims()
    offered = [Claim(fd, 0) for fd in (10, 11, 12)]
    for claim in offered:
        claims.register(claim)
    sent: list[int] = []
    assert claims.hand_back(lambda index, fd: sent.append(fd) is None, 2) == 2
    assert sent == [10, 11] and claims.waiting() == 1
    assert [claim.state for claim in offered] == [HANDED, HANDED, WAITING]
    # the loop comes back to them: the handed-back ones are dropped, the other started
    assert [claims.start(claim) for claim in offered] == [False, False, True]
    assert offered[2].state == STARTED and claims.waiting() == 0


def test_a_send_that_fails_leaves_the_connection_waiting() -> None:
    claims = Claims()
    claim = Claim(10, 1)
    claims.register(claim)
    assert claims.hand_back(lambda index, fd: False, 10) == 0
    assert claim.state == WAITING and claims.waiting() == 1


def test_a_handed_back_connection_is_never_offered_again_nor_read() -> None:
    claims = Claims()
    claim = Claim(10, 0)
    claims.register(claim)
    claims.hand_back(lambda index, fd: True, 1)
    claims.offer(claim)
    assert claim.state == HANDED and claims.waiting() == 0

    def recv() -> bytes:
        raise AssertionError("a handed-back connection was read")

    assert claims.read(claim, recv) == NOTHING


def test_a_read_that_finds_nothing_leaves_it_waiting_one_that_fails_starts_it() -> None:
    claims = Claims()
    claim = Claim(10, 0)
    claims.register(claim)

    def nothing() -> bytes:
        raise BlockingIOError

    with pytest.raises(BlockingIOError):
        claims.read(claim, nothing)
    assert claim.state == WAITING

    def reset() -> bytes:
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        claims.read(claim, reset)
    assert claim.state == STARTED and claims.waiting() == 0
    claims.offer(claim)
    assert claim.state == WAITING
    assert claims.read(claim, lambda: b"GET") == b"GET" and claim.state == STARTED


def test_under_stress_each_connection_is_started_or_handed_back_never_both() -> None:
    """The loop (this thread) offers connections and reads or starts them; a native
    thread hands back whatever waits, all the time. Every connection ends up exactly
    one way, and no handed-back one is ever read."""
    claims = Claims()
    count = 5000
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the two threads interleave as often as they can
    handed: list[int] = []
    started: list[int] = []
    read_after_handed: list[int] = []
    done = threading.Event()

    def send(index: int, fd: int) -> bool:
        time.sleep(0)  # sendmsg lets the GIL go: the loop runs meanwhile
        handed.append(fd)
        return True

    def hand_back() -> None:
        while not done.is_set():
            claims.hand_back(send, random.randint(1, 5))

    thread = threading.Thread(target=hand_back)
    thread.start()
    try:
        pending: list[Claim] = []
        for fd in range(count):
            claim = Claim(fd, 0)
            claims.register(claim)
            pending.append(claim)
            if len(pending) >= random.randint(1, 8):
                for waiting in pending:
                    if random.random() < 0.5:
                        if claims.start(waiting):
                            started.append(waiting.fd)
                    else:
                        def recv(fd: int = waiting.fd, claim: Claim = waiting) -> bytes:
                            time.sleep(0)  # recv lets the GIL go too
                            if claim.state == HANDED:
                                read_after_handed.append(fd)
                            return b"x"
                        if claims.read(waiting, recv) != NOTHING:
                            started.append(waiting.fd)
                for waiting in pending:  # their connections close
                    claims.forget(waiting)
                pending.clear()
        for waiting in pending:
            if claims.start(waiting):
                started.append(waiting.fd)
    finally:
        done.set()
        thread.join()
        sys.setswitchinterval(switch)
    assert not read_after_handed
    assert not set(handed) & set(started)
    assert sorted(handed + started) == list(range(count))
    assert len(handed) == len(set(handed))
    assert handed and started  # both sides won some


def test_a_closed_connection_and_a_stopped_worker_hand_back_nothing() -> None:
    claims = Claims()
    first, second = Claim(10, 0), Claim(11, 0)
    claims.register(first)
    claims.register(second)
    claims.forget(first)  # closed: its descriptor number may be another's soon
    assert first.state == STARTED
    assert claims.hand_back(lambda index, fd: fd == 11, 5) == 1
    third = Claim(12, 0)
    claims.register(third)
    claims.close()
    assert claims.hand_back(lambda index, fd: True, 5) == 0 and third.state == WAITING
