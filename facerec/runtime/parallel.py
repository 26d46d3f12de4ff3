"""Work spread over a process pool without holding the whole stream in memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor


def bounded_map(pool: Executor, function: Callable, items: Iterable, in_flight: int) -> Iterator:
    """pool.map that pulls ``items`` lazily: at most ``in_flight`` tasks wait at a time, so a
    stream of a million photos never sits in memory as a list of tasks. Yields
    (item, function(item)) in the order of ``items``."""
    pending: deque = deque()
    for item in items:
        pending.append((item, pool.submit(function, item)))
        if len(pending) >= in_flight:
            item, future = pending.popleft()
            yield item, future.result()
    while pending:
        item, future = pending.popleft()
        yield item, future.result()
