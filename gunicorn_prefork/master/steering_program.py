"""Steering new connections between the listeners of one SO_REUSEPORT group.

Two parts: the *policy*, :func:`allowed_indices`, a pure function of the slots'
states (which slots serve, which drain, which hold connections nobody accepts),
and the *mechanism*, a classic BPF program attached to the group (:func:`attach`,
:func:`detach`, and :class:`AttachedProgram`, which attaches a new program only when the
allowed set changes).

A classic BPF program attached with ``SO_ATTACH_REUSEPORT_CBPF`` (no privileges
needed; it applies to the whole group, whichever listening member attaches it) returns
the *index* of the socket that gets each new connection. Indices follow the order in
which the sockets started listening; when a member closes, the last one moves into
its index (the slot table keeps the same order, see ``slots.SlotTable.retire``).

The program here spreads connections by the packet's flow hash over the allowed
indices only: ``A = rxhash; A %= n; return allowed[A]``. The master uses it to keep
new connections away from a slot that has no serving worker (a crashed worker whose
replacement is still booting) or that is being drained before it closes (TTOU).
An index the kernel does not know falls back to its own hash, so a stale program
never drops a connection.
"""

from __future__ import annotations

import ctypes
import errno
import math
import socket
import struct
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SO_ATTACH_REUSEPORT_CBPF = 51
SO_DETACH_REUSEPORT_BPF = 68

# classic BPF opcodes (linux/filter.h)
_LD_W_ABS = 0x20     # BPF_LD | BPF_W | BPF_ABS
_ALU_MOD_K = 0x94    # BPF_ALU | BPF_MOD | BPF_K
_JMP_JEQ_K = 0x15    # BPF_JMP | BPF_JEQ | BPF_K
_RET_K = 0x06        # BPF_RET | BPF_K
_RET_A = 0x16        # BPF_RET | BPF_A
_SKF_AD_RXHASH = (-0x1000 + 32) & 0xFFFFFFFF  # SKF_AD_OFF + SKF_AD_RXHASH

MAX_INDICES = 2000   # 2 instructions each, within cBPF's 4096-instruction limit

Instruction = tuple[int, int, int, int]


def program(allowed: Sequence[int]) -> list[Instruction]:
    """The cBPF program that spreads new connections over ``allowed`` indices."""
    if not allowed:
        raise ValueError("at least one index must be allowed")
    if len(allowed) > MAX_INDICES:
        raise ValueError(f"at most {MAX_INDICES} indices")
    code: list[Instruction] = [(_LD_W_ABS, 0, 0, _SKF_AD_RXHASH),
                               (_ALU_MOD_K, 0, 0, len(allowed))]
    if list(allowed) == list(range(len(allowed))):
        return [*code, (_RET_A, 0, 0, 0)]
    for position, index in enumerate(allowed[:-1]):
        code.append((_JMP_JEQ_K, 0, 1, position))   # A == position ? next : skip the ret
        code.append((_RET_K, 0, 0, index))
    code.append((_RET_K, 0, 0, allowed[-1]))
    return code


def attach(sock: socket.socket, allowed: Sequence[int]) -> None:
    """Attach the program for ``allowed`` to the group ``sock`` listens in."""
    code = program(allowed)
    filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in code))
    fprog = struct.pack("HL", len(code), ctypes.addressof(filters))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def detach(sock: socket.socket) -> None:
    """Back to the kernel's plain hashing over every listener of the group."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0)
    except OSError as exc:
        if exc.errno != errno.ENOENT:  # no program attached: nothing to do
            raise


def allowed_indices(count: int, serving: Collection[int], draining: Collection[int],
                    stranded: Collection[int], num_workers: int,
                    stalled: Collection[int] = ()) -> tuple[int, ...]:
    """Which of ``count`` slot indices may take new connections; ``()`` = all of them
    (the kernel's plain hash).

    New connections go only to serving slots that do not drain and are not stalled
    (unless every serving slot is stalled: then stalls are ignored). When none serves
    (every worker recycling at once), they queue on the slots that will get a worker,
    not on those about to close or holding connections nobody accepts, at most
    ``num_workers`` of them. Allowing all (or none) means plain hashing.
    """
    live = tuple(index for index in range(count)
                 if index in serving and index not in draining)
    allowed = tuple(index for index in live if index not in stalled) or live
    if not allowed:
        allowed = tuple(index for index in range(count)
                        if index not in draining and index not in stranded)[:num_workers]
    if len(allowed) in (0, count):
        return ()
    return allowed


#: Held connections apart (most minus fewest) before the steering prefers the least
#: loaded slots, and the fraction of the mean held that the gap must also reach:
#: short connections come and go too fast for their counts to mean anything (and
#: the program would change on every look); held keep-alive connections do.
MIN_GAP = 1
GAP_OF_MEAN = 0.25


#: Most entries of a weighted table (the program is one comparison per entry, run
#: for every new connection).
MAX_ENTRIES = 64


def weighted(allowed: Sequence[int], held: Mapping[int, int],
             queued: Mapping[int, int] | None = None) -> tuple[int, ...]:
    """Of ``allowed``, a table giving each slot a share of new connections in
    proportion to its room below a level: water filling. ``held`` is each slot's load
    (what its worker holds and what is queued for it); the level is the most loaded
    slot's load plus the mean of what is queued (``queued``): a burst arriving
    before the next look is expected to go on as it began, so every slot gets a
    share, the least loaded most (tops up every slot, instead of landing on the one
    that was least loaded at the look). With nothing queued (connections opened one
    at a time, the look after each) the level is the top: only slots below it get
    new connections. ``allowed`` itself while the slots hold about the same (see
    :data:`MIN_GAP`, :data:`GAP_OF_MEAN`), or while one has no load in ``held`` (its
    worker has not booted: weighing it as empty sent a burst to the booting workers
    only, and none to the one that served). At most :data:`MAX_ENTRIES` entries (the
    shares rounded, every slot below the level keeping at least one), reduced by
    their greatest common divisor."""
    allowed = tuple(allowed)
    if len(allowed) < 2 or any(index not in held for index in allowed):
        return allowed  # a slot whose load is unknown (its worker boots) is not empty
    loads = [held[index] for index in allowed]
    most = max(loads)
    gap = most - min(loads)
    if gap < MIN_GAP or gap < GAP_OF_MEAN * sum(loads) / len(loads):
        return allowed
    waiting = sum(queued.get(index, 0) for index in allowed) if queued else 0
    level = most + math.ceil(waiting / len(allowed))
    shares = [level - load for load in loads]
    total = sum(shares)
    if total > MAX_ENTRIES:
        shares = [max(1, share * MAX_ENTRIES // total) if share else 0 for share in shares]
    common = math.gcd(*shares)  # the shortest table with the same shares
    shares = [share // common for share in shares]
    return tuple(index for index, share in zip(allowed, shares) for _ in range(share))


#: How many more connections than the slot holding the fewest a slot must hold
#: before its worker ends keep-alive ones: the slots end up at most two apart.
SHED_GAP = 3
#: Most keep-alive connections one slot's worker ends per look of the master (about
#: once a second): a new worker among busy ones draws them in steps, not a storm.
SHED_PER_LOOK = 16


def caps(held: Mapping[int, int], takers: Collection[int]) -> dict[int, int]:
    """Keep-alive rebalancing: for each slot index in ``held``, the number of held
    connections above which its worker ends keep-alive ones gracefully; 0 = none.

    A slot that may take connections (in ``takers``) and holds :data:`SHED_GAP` or
    more over the fewest held among them gets a cap of its share: the mean of the
    takers (rounded up), and never below ``SHED_GAP - 1`` over the fewest; its
    worker ends what it holds above that (at most :data:`SHED_PER_LOOK` per look,
    the master looks again about once a second), and those clients reconnect where
    the fewest are."""
    sharing = [held[index] for index in held if index in takers]
    if len(sharing) < 2:
        return dict.fromkeys(held, 0)
    fewest = min(sharing)
    share = max(fewest + SHED_GAP - 1, math.ceil(sum(sharing) / len(sharing)))
    return {index: max(share, count - SHED_PER_LOOK)
            if index in takers and count >= fewest + SHED_GAP else 0
            for index, count in held.items()}


def describe(table: Sequence[int]) -> str:
    """A program's table for a log line: each index, with its entries when it has
    several (``"1, 2x3, 3x5"``)."""
    return ", ".join(str(index) if count == 1 else f"{index}x{count}"
                     for index, count in Counter(table).items())


@dataclass(frozen=True)
class Group:
    """What the master last decided about one SO_REUSEPORT group, as one immutable
    value (read by the stall watch's thread while the main loop may build the next)."""

    count: int
    serving: frozenset[int]
    draining: frozenset[int]
    stranded: frozenset[int]
    num_workers: int
    #: one listener per bind, through which programs are attached
    attach_via: tuple[Any, ...]
    #: the slots, in index order, as the stall watch sees them
    watched: tuple[Any, ...] = ()

    def unserved(self) -> tuple[int, ...]:
        """Slots no worker takes connections on now and none is about to: a crashed
        worker's until its replacement serves, a stranded one (not those draining:
        their worker still accepts)."""
        return tuple(index for index in range(self.count)
                     if index not in self.serving and index not in self.draining)

    def takers(self, stalled: Collection[int] = ()) -> tuple[int, ...]:
        """Slots that may take connections moved off other slots: a booted worker
        serves them (a watched slot with a progress counter), and they neither stall,
        drain nor hold connections nobody accepts."""
        return tuple(index for index, watched in enumerate(self.watched)
                     if watched.progress is not None and index in self.serving
                     and index not in stalled and index not in self.draining
                     and index not in self.stranded)

    def allowed(self, stalled: Collection[int] = ()) -> tuple[int, ...]:
        return allowed_indices(self.count, self.serving, self.draining, self.stranded,
                               self.num_workers, stalled)

    def table(self, stalled: Collection[int], held: Mapping[int, int],
              shedding: Collection[int] = (),
              queued: Mapping[int, int] | None = None) -> tuple[int, ...]:
        """The program's table: the allowed slots, weighed by the connections they
        hold when that matters (:func:`weighted`); ``()`` = the kernel's plain hash
        over all. Slots ``shedding`` (ending keep-alive connections above their cap)
        get no new connection while another may: a client they ended would otherwise
        come back to them as soon as the shedding made them the least loaded, and be
        ended again (measured: 81-283 connections ended per 15 s of wrk -c64)."""
        allowed = self.allowed(stalled)
        if not allowed and len(self.serving) < self.count:
            return allowed  # none serves: the plain hash until one does
        spread = allowed or tuple(range(self.count))
        narrowed = tuple(index for index in spread if index not in shedding)
        if narrowed and narrowed != spread:
            return weighted(narrowed, held, queued)
        table = weighted(spread, held, queued)
        return () if table == spread and not allowed else table


class AttachedProgram:
    """The program currently attached to one SO_REUSEPORT group."""

    def __init__(self) -> None:
        #: the allowed indices of the attached program; () = none attached; None =
        #: unknown (a new group)
        self.current: tuple[int, ...] | None = None

    def reset(self) -> None:
        """A new group: nothing is attached yet."""
        self.current = None

    def apply(self, listeners: Sequence[Any], allowed: tuple[int, ...]) -> bool:
        """Attach the program for ``allowed`` (``()``: detach) through ``listeners``,
        one listening gunicorn socket of each bind's group. Returns whether the
        group's program changed; raises OSError when the kernel refuses."""
        if allowed == self.current:
            return False
        for listener in listeners:
            if listener.sock is None:
                return False
            if allowed:
                attach(listener.sock, allowed)
            else:
                detach(listener.sock)
        self.current = allowed
        return True
