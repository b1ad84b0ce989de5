"""Hints from a llama.cpp engine's KV cache to tierd (issue 15).

With a non-unified KV cache (``llama_context_params.kv_unified = false``) llama.cpp
gives every sequence slot its own *stream*: each layer's K tensor (``cache_k_l<i>``,
shape ``[row, kv_size, n_stream]``) and V tensor (``cache_v_l<i>``; not transposed when
flash attention is on) hold sequence ``s``'s cells at ``base + s * nb[2]``, one
``nb[1]``-byte row per cell. An engine finds those tensors once (their ``data``
pointers, e.g. through the scheduler's eval callback on the first decode, as
``bench/llama/driver.cpp`` does) and then tells tierd what its scheduler knows:

=====================  ==========================================================
engine event           hint
=====================  ==========================================================
start                  register each K and V tensor as a region of blocks
turn scheduled next    PREFETCH the cells the turn will use: its history, its
                       prompt and its output budget (with a deadline)
each decode step       ACCESS the running sequences' cells (at most every
                       ``access_interval_s`` per sequence: the ring is not a log)
turn done, idle        COLD: the session waits for its user, demote it first
sequence dropped       FREE: its contents are dead
=====================  ==========================================================

The policy is plain code over a client with ``register``, ``hint_range`` and
``unregister`` (:class:`tierd.Client`, or a fake in tests), so it is unit-tested
without tierd. ``bench/llama/driver.cpp`` implements the same policy in C++ through
``libtierd`` for the benchmark VM, which has no Python.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from . import HINT_ACCESS, HINT_COLD, HINT_FREE, HINT_PREFETCH

__all__ = ["KvTensor", "KvHints", "kv_tensor"]

_NAME = re.compile(r"^cache_(?:[A-Za-z0-9_]*_)?([kv])_l(\d+)$")


@dataclass(frozen=True)
class KvTensor:
    """One layer's K or V tensor of the cache, as llama.cpp laid it out."""

    layer: int
    is_v: bool
    base: int  #: address of the tensor's data
    nbytes: int  #: the whole tensor, all streams
    row_bytes: int  #: nb[1]: one cell of one sequence
    stream_bytes: int  #: nb[2]: one sequence slot

    def cells_range(self, seq: int, cells: int) -> Tuple[int, int]:
        """Byte range ``[start, end)`` of the first ``cells`` cells of slot ``seq``."""
        if seq < 0 or (seq + 1) * self.stream_bytes > self.nbytes:
            raise ValueError(f"sequence slot {seq} is outside tensor layer {self.layer} ({self.nbytes} bytes)")
        if cells < 0 or cells * self.row_bytes > self.stream_bytes:
            raise ValueError(f"{cells} cells do not fit a {self.stream_bytes}-byte stream")
        start = self.base + seq * self.stream_bytes
        return start, start + cells * self.row_bytes


def kv_tensor(name: str, data: int, nbytes: int, nb1: int, nb2: int) -> Optional[KvTensor]:
    """A :class:`KvTensor` from a ggml tensor's name and fields, or None when the name is
    not a KV cache tensor (``cache_k_l3``, ``cache_v_l3``, or with a cache's name tag)."""
    m = _NAME.match(name)
    if not m:
        return None
    return KvTensor(int(m.group(2)), m.group(1) == "v", data, nbytes, nb1, nb2)


class KvHints:
    """Registers a llama.cpp KV cache with tierd and turns scheduler events into hints.

    ``client``: a :class:`tierd.Client` (or anything with ``register(base, length,
    block_size) -> region``, ``hint_range(region, kind, first, n, deadline_ms) ->
    accepted`` and ``unregister(region)``). Each tensor is registered as the whole
    blocks inside it (ggml aligns tensors to 64 bytes, tierd wants page-aligned
    blocks); the few bytes at its edges are left to tierd's sampling.
    """

    def __init__(
        self,
        client,
        tensors: List[KvTensor],
        block_size: int = 64 << 10,
        access_interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ):
        if block_size <= 0 or block_size & (block_size - 1):
            raise ValueError(f"block_size {block_size} is not a power of two")
        if not tensors:
            raise ValueError("no KV tensors to register")
        self._client = client
        self._block = block_size
        self._interval = access_interval_s
        self._clock = clock
        self._last_access: Dict[int, float] = {}
        self.sent = 0  #: hint entries sent
        self.dropped_blocks = 0  #: blocks the ring did not take (full)
        self._regions: List[Tuple[KvTensor, int, int, int]] = []  # tensor, region, base, length
        try:
            for t in sorted(tensors, key=lambda t: (t.layer, t.is_v)):
                base = -(-t.base // block_size) * block_size
                end = (t.base + t.nbytes) // block_size * block_size
                if end <= base:
                    continue  # smaller than a block: sampling only
                region = client.register(base, end - base, block_size)
                self._regions.append((t, region, base, end - base))
        except Exception:
            self.close()
            raise

    @property
    def regions(self) -> List[int]:
        return [r for _, r, _, _ in self._regions]

    def blocks(self, seq: int, cells: int) -> List[Tuple[int, int, int]]:
        """``(region, first_block, n_blocks)`` covering slot ``seq``'s first ``cells``
        cells in every registered tensor; empty when ``cells`` is 0."""
        out = []
        for t, region, base, length in self._regions:
            start, end = t.cells_range(seq, cells)
            start, end = max(start, base), min(end, base + length)
            if end <= start:
                continue
            first = (start - base) // self._block
            last = (end - 1 - base) // self._block
            out.append((region, first, last - first + 1))
        return out

    def _send(self, seq: int, cells: int, kind: int, deadline_ms: int = 0) -> None:
        for region, first, n in self.blocks(seq, cells):
            accepted = self._client.hint_range(region, kind, first, n, deadline_ms)
            self.sent += 1
            if accepted < n:
                self.dropped_blocks += n - accepted

    def scheduled(self, seq: int, cells: int, deadline_ms: int = 100) -> None:
        """A turn of the session in slot ``seq`` is next: PREFETCH its first ``cells``
        cells. Pass every cell the turn will use (history + prompt + the request's
        maximum output), not only those written so far: the pages its decode steps
        write are then fast before the first write."""
        self._send(seq, cells, HINT_PREFETCH, deadline_ms)

    def step(self, seq: int, cells: int) -> bool:
        """Slot ``seq`` ran a step over ``cells`` cells: ACCESS, unless one was sent for
        it within ``access_interval_s``. Returns whether a hint went out."""
        now = self._clock()
        last = self._last_access.get(seq)
        if last is not None and now - last < self._interval:
            return False
        self._last_access[seq] = now
        self._send(seq, cells, HINT_ACCESS)
        return True

    def idle(self, seq: int, cells: int) -> None:
        """The turn finished; the session waits for its user with its KV kept: COLD."""
        self._last_access.pop(seq, None)
        self._send(seq, cells, HINT_COLD)

    def drop(self, seq: int, cells: int) -> None:
        """The sequence was removed (``llama_memory_seq_rm``): FREE its cells."""
        self._last_access.pop(seq, None)
        self._send(seq, cells, HINT_FREE)

    def close(self) -> None:
        """Unregisters every region (tierd forgets them; the memory stays the engine's)."""
        regions, self._regions = self._regions, []
        for _, region, _, _ in regions:
            self._client.unregister(region)
