"""Bookkeeping of a pinned pool's slots: the rules of ``bench/src/pinpool.rs`` in Python.

Slots are laid out per node up front (``[(node, count), ...]`` in address order). A
logical block lives in one slot and may have a *shadow*: a slot still holding a valid
copy (the one it was last moved from). tierd asks for a slot's contents on another
node; :meth:`SlotTable.serve` answers how: re-point to the shadow already there (no
copy), copy into a free slot there (or into another block's shadow, dropping it), or
decline. Pure logic: no memory, no tierd.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

COPY = "copy"
REPOINT = "repoint"
DECLINE = "decline"


class SlotTable:
    def __init__(self, layout: Sequence[Tuple[int, int]]):
        self.node: List[int] = [n for n, count in layout for _ in range(count)]
        self.holder: List[Optional[object]] = [None] * len(self.node)
        self.shadow_of: List[Optional[object]] = [None] * len(self.node)
        self.slot: Dict[object, int] = {}
        self.shadow: Dict[object, int] = {}
        self.copies = 0
        self.repoints = 0
        self.declines = 0

    def __len__(self) -> int:
        return len(self.node)

    def nodes(self) -> List[int]:
        """Nodes with slots, in layout order."""
        out: List[int] = []
        for n in self.node:
            if n not in out:
                out.append(n)
        return out

    def free_slots(self, node: int) -> int:
        """Slots on ``node`` holding no block (shadows count: they can be given up)."""
        return sum(1 for s, n in enumerate(self.node) if n == node and self.holder[s] is None)

    def _take(self, node: int) -> Optional[int]:
        fallback = None
        for s, n in enumerate(self.node):
            if n != node or self.holder[s] is not None:
                continue
            if self.shadow_of[s] is None:
                return s
            if fallback is None:
                fallback = s
        if fallback is not None:
            key = self.shadow_of[fallback]
            self.shadow_of[fallback] = None
            self.shadow.pop(key, None)
        return fallback

    def allocate(self, key, node: int) -> Optional[int]:
        """A slot on ``node`` for new contents of ``key`` (its old slot is freed)."""
        self.free(key)
        s = self._take(node)
        if s is not None:
            self.holder[s] = key
            self.slot[key] = s
        return s

    def written(self, key) -> None:
        """``key``'s contents changed: its shadow is stale."""
        s = self.shadow.pop(key, None)
        if s is not None:
            self.shadow_of[s] = None

    def free(self, key) -> None:
        self.written(key)
        s = self.slot.pop(key, None)
        if s is not None:
            self.holder[s] = None

    def serve(self, src: int, node: int) -> Tuple[str, int]:
        """How to get slot ``src``'s block onto ``node``: ``(COPY, dst)``,
        ``(REPOINT, dst)`` or ``(DECLINE, -1)``; the table is updated as if done."""
        key = self.holder[src] if 0 <= src < len(self.node) else None
        if key is None:
            self.declines += 1
            return DECLINE, -1
        sh = self.shadow.get(key)
        if sh is not None and self.node[sh] == node:
            dst, how = sh, REPOINT
            self.shadow_of[sh] = None
        else:
            t = self._take(node)
            if t is None:
                self.declines += 1
                return DECLINE, -1
            dst, how = t, COPY
            if sh is not None:
                self.shadow_of[sh] = None
        self.holder[src] = None
        self.shadow_of[src] = key
        self.shadow[key] = src
        self.holder[dst] = key
        self.slot[key] = dst
        if how == REPOINT:
            self.repoints += 1
        else:
            self.copies += 1
        return how, dst
