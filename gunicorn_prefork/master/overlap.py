"""The USR2 overlap rule: while two masters share the slots, who watches and steers.

After USR2 the new master adopts every slot socket, and until the old one exits both
masters' workers accept from the same queues. Then neither master watches stalls (it
could only misread them from its own workers' counters) and only the new master
steers; the old one steers again if the new one exits before it.

:class:`Overlap` remembers what the main loop last saw and logs each change once.

Invariant: only the main loop calls :meth:`Overlap.update`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OverlapChange:
    """What one look changed."""

    #: this master began or stopped sharing its slots (the watch starts or stops)
    sharing: bool = False
    #: the new master this one started is gone: what it attached last is not ours
    new_master_gone: bool = False


class Overlap:
    """Does another master share our slots, and did we step aside for it?"""

    def __init__(self) -> None:
        #: another master's workers accept on our slots too
        self.sharing = False
        #: we started a new master (USR2): it steers while it lives
        self.stepped_aside = False

    def update(self, sharing: bool, stepped_aside: bool, log: Any) -> OverlapChange:
        """From the main loop: the server's current view; returns what changed."""
        gone = False
        if stepped_aside != self.stepped_aside:
            self.stepped_aside = stepped_aside
            if stepped_aside:
                log.info("a new master shares the slots (USR2): it steers them now")
            else:
                log.info("the new master is gone: steering the slots again")
                gone = True
        if sharing == self.sharing:
            return OverlapChange(new_master_gone=gone)
        self.sharing = sharing
        if sharing:
            log.info("the stall watch pauses while two masters share the slots")
        else:
            log.info("the stall watch resumes: this master alone serves the slots")
        return OverlapChange(sharing=True, new_master_gone=gone)
