"""What a worker gets at its fork (:mod:`gunicorn_prefork.fork.child_plan`), across a
real fork: the plan armed in the master is the child's, the other slots' sockets are
closed there and stay open in the master."""

from __future__ import annotations

import os
import socket

from gunicorn_prefork.fork import child, child_plan


def test_the_armed_plan_is_received_by_the_child_only() -> None:
    other_slot = socket.socket()
    plan = child_plan.ChildPlan(os.getpid(), close=[other_slot], boot_delay=1.5)
    child_plan.arm(plan)
    try:
        assert child_plan.armed() is plan
        pid = os.fork()
        if pid == 0:
            child_plan.after_fork_in_child()  # what arbiter_hook registers at fork
            got = child_plan.received()
            ok = (got is not None and got.boot_delay == 1.5 and other_slot.fileno() == -1
                  and child.is_child() and child_plan.armed() is None)
            os._exit(0 if ok else 1)
    finally:
        child_plan.disarm()
    assert os.waitpid(pid, 0)[1] == 0
    assert child_plan.armed() is None and child_plan.received() is None
    assert other_slot.fileno() != -1 and not child.is_child()
    other_slot.close()
