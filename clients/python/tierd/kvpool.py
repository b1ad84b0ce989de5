"""A host KV pool in pinned memory, placed by tierd through relocation requests.

GPU inference engines keep offloaded KV blocks in host memory pinned for DMA
(``cudaHostAlloc`` / ``cudaHostRegister``), which ``move_pages`` cannot move. This pool
lays that memory out per node up front (one slab of slots per node, each bound to its
node before first touch, then pinned by the engine's ``pin`` callback), registers it with
tierd as a pinned region, and keeps the block table (key → slot). tierd plans placement
from the pool's hints and asks for moves in both directions; :meth:`PinnedKVPool.serve`
carries them out: a copy, or a re-point to a *shadow* (a still-valid copy left behind by
an earlier move, dropped when the block is rewritten), then acknowledges them.

The calls follow an offloading connector's shape: :meth:`allocate` / :meth:`store` (a
block written once), :meth:`lookup`, :meth:`load` (read back, hinted ACCESS),
:meth:`evict`. :meth:`view` gives a block as a ``memoryview``, :meth:`array` as a numpy
array (``numpy.frombuffer``, no copy); for torch, ``torch.frombuffer(pool.view(key),
dtype=torch.uint8)`` gives a tensor on the same memory. See
``clients/python/examples/offload_connector.py`` and docs/protocol.md, "Pinned regions".

Not thread-safe: one engine thread owns a pool (hints and serving included).
"""

from __future__ import annotations

import mmap
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

from . import HINT_ACCESS, HINT_FREE, HINT_PREFETCH, HINT_WRITTEN, TierdError, buffer_address
from .slots import COPY, DECLINE, REPOINT, SlotTable

__all__ = ["PinnedKVPool"]


class PinnedKVPool:
    """``layout``: ``[(node, slots), ...]``, the fast node first; ``block_size`` bytes a
    slot (a multiple of the page size). ``pin(address, length)`` pins the whole pool
    (e.g. ``cudaHostRegister``) and may return a handle kept alive with the pool; without
    it the memory is not pinned (tests). ``bind`` binds each slab to its node first."""

    def __init__(
        self,
        client,
        layout: Sequence[Tuple[int, int]],
        block_size: int,
        pin: Optional[Callable[[int, int], object]] = None,
        bind: bool = True,
    ):
        if block_size <= 0 or block_size % mmap.PAGESIZE:
            raise ValueError(f"block_size {block_size} is not a multiple of the page size")
        self.client = client
        self.block_size = block_size
        self.layout = [(int(n), int(c)) for n, c in layout]
        self.slots = SlotTable(self.layout)
        self.fast_node = self.layout[0][0]
        total = len(self.slots) * block_size
        self._mem = mmap.mmap(-1, total, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._view = memoryview(self._mem)
        off = 0
        for node, count in self.layout:
            slab = self._view[off : off + count * block_size]
            if bind and count:
                client.bind_node(slab, node)
            for p in range(0, count * block_size, mmap.PAGESIZE):
                slab[p] = 0  # first touch under the node's policy
            off += count * block_size
        self.base = buffer_address(self._mem)
        self._pin = pin(self.base, total) if pin else None
        self.region = client.register_pinned(self.base, total, block_size, self.layout)

    # --- the connector's calls -------------------------------------------------------

    def lookup(self, key) -> bool:
        return key in self.slots.slot

    def allocate(self, key, node: Optional[int] = None) -> int:
        """A slot for new contents of ``key``: on ``node`` (default: the fast node, else
        any node with room). Raises ``MemoryError`` when the pool is full (evict first)."""
        for n in [node] if node is not None else [self.fast_node] + [x for x, _ in self.layout[1:]]:
            s = self.slots.allocate(key, n)
            if s is not None:
                return s
        raise MemoryError("pinned KV pool is full")

    def store(self, key, data, node: Optional[int] = None) -> int:
        """Writes ``data`` (bytes-like, at most a block) as ``key``'s contents."""
        s = self.slots.slot.get(key)
        if s is None:
            s = self.allocate(key, node)
        raw = memoryview(data).cast("B")
        if len(raw) > self.block_size:
            raise ValueError(f"{len(raw)} bytes do not fit a {self.block_size}-byte block")
        off = s * self.block_size
        self._view[off : off + len(raw)] = raw
        self.slots.written(key)
        self.client.hint(self.region, HINT_WRITTEN, [s])
        return s

    def load(self, key, out=None):
        """``key``'s contents, copied into ``out`` (a writable buffer) or returned as
        bytes; hinted ACCESS."""
        s = self.slots.slot[key]
        self.client.hint(self.region, HINT_ACCESS, [s])
        src = self._view[s * self.block_size : (s + 1) * self.block_size]
        if out is None:
            return bytes(src)
        dst = memoryview(out).cast("B")
        dst[:] = src[: len(dst)]
        return out

    def prefetch(self, keys: Iterable) -> None:
        """Blocks about to be loaded: tierd promotes them first."""
        blocks = [self.slots.slot[k] for k in keys if k in self.slots.slot]
        if blocks:
            self.client.hint(self.region, HINT_PREFETCH, blocks)

    def evict(self, key) -> None:
        s = self.slots.slot.get(key)
        if s is None:
            return
        sh = self.slots.shadow.get(key)
        self.slots.free(key)
        self.client.hint(self.region, HINT_FREE, [s] if sh is None else [s, sh])

    def view(self, key) -> memoryview:
        """``key``'s block, in place (valid until the next :meth:`serve`)."""
        s = self.slots.slot[key]
        return self._view[s * self.block_size : (s + 1) * self.block_size]

    def array(self, key, dtype="uint8"):
        """``key``'s block as a numpy array on the pool's memory (needs numpy)."""
        import numpy

        return numpy.frombuffer(self.view(key), dtype=dtype)

    def node_of(self, key) -> int:
        return self.slots.node[self.slots.slot[key]]

    # --- tierd's requests -----------------------------------------------------------

    def serve(self) -> Dict[str, int]:
        """Carries out tierd's pending relocation requests; returns what it did."""
        done = {COPY: 0, REPOINT: 0, DECLINE: 0}
        declined = []
        for src, node in self.client.relocations(self.region):
            how, dst = self.slots.serve(src, node)
            done[how] += 1
            if how == DECLINE:
                declined.append(src)
                continue
            if how == COPY:
                bs = self.block_size
                self._view[dst * bs : (dst + 1) * bs] = self._view[src * bs : (src + 1) * bs]
            self.client.moved(self.region, src, dst, 1)
        if declined:
            self.client.declined(self.region, declined)
        return done

    def stats(self) -> Dict[str, int]:
        t = self.slots
        return {
            "copies": t.copies,
            "copied_bytes": t.copies * self.block_size,
            "repoints": t.repoints,
            "avoided_bytes": t.repoints * self.block_size,
            "declines": t.declines,
            **{f"free_slots_node{n}": t.free_slots(n) for n in t.nodes()},
        }

    def close(self) -> None:
        try:
            self.client.unregister(self.region)
        except TierdError:
            pass
        self._view.release()
        self._pin = None
        self._mem.close()
