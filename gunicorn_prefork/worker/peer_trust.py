"""Whether a peer's address is in ``forwarded_allow_ips``, decided once per address.

Gunicorn 24 and later parse the peer's address with ``ipaddress`` and test it
against each allowed network for every request (``_ip_in_allow_list``, called by the
header policy of every request: about 4 % of a worker's CPU on hello world). The
answer depends only on the address and the allow list, which in a worker does not
change; a keep-alive connection asks the same question for each of its requests.
:func:`install` replaces that function, in the worker process, with one that keeps
its answers.

Invariants: an answer is kept only for the very list objects it was computed
against (kept alive by the cache, so their ids are not reused); at most
:data:`LIMIT` answers are kept, then the cache starts again; exceptions are not
kept (Gunicorn's function raises none). On Gunicorn 20.1 to 23, which test the
address with a string comparison, nothing is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _gunicorn

#: Most (address, lists) answers kept before the cache is emptied.
LIMIT = 4096

InAllowList = Callable[[str, Any, Any], bool]


def remembering(original: InAllowList) -> InAllowList:
    """``original(ip, allow_list, networks)``, each answer computed once."""
    kept: dict[tuple[str, int, int], tuple[bool, Any, Any]] = {}

    def in_allow_list(ip_str: str, allow_list: Any, networks: Any) -> bool:
        key = (ip_str, id(allow_list), id(networks))
        hit = kept.get(key)
        if hit is not None and hit[1] is allow_list and hit[2] is networks:
            return hit[0]
        answer = bool(original(ip_str, allow_list, networks))
        if len(kept) >= LIMIT:
            kept.clear()
        kept[key] = (answer, allow_list, networks)
        return answer

    return in_allow_list


def install() -> None:
    """In a worker process, where Gunicorn has the function (24 and later)."""
    _gunicorn.install_ip_in_allow_list(remembering)
