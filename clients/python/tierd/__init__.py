"""Python client of tierd's shared-memory protocol (ctypes over libtierd.so).

A :class:`Client` registers regions of the caller's own memory as fixed-size blocks,
sends hints about blocks (a write into a shared ring: never blocks, dropped and
counted when the ring is full), reads back the NUMA node of each block, and opens
named shared pools. Every failure raises :class:`TierdError` (an ``OSError`` with the
errno tierd or the library returned). Byte layout and semantics: ``docs/protocol.md``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as _errno
import mmap
import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

__all__ = [
    "Client",
    "TierdError",
    "load_library",
    "HINT_ACCESS",
    "HINT_PREFETCH",
    "HINT_COLD",
    "HINT_FREE",
    "HINT_PIN_FAST",
    "HINT_UNPIN",
    "TIER_FAST",
    "TIER_SLOWEST",
    "HINT_WRITTEN",
]

# Values of tierd.h.
HINT_ACCESS = 1
HINT_PREFETCH = 2
HINT_COLD = 3
HINT_FREE = 4
HINT_PIN_FAST = 5
HINT_UNPIN = 6
HINT_MOVED = 8
HINT_DECLINED = 9
HINT_WRITTEN = 10
TIER_FAST = 0
TIER_SLOWEST = -1
POOL_SHARED = 1
POOL_READ_ONLY = 2


class TierdError(OSError):
    """A call failed; ``errno`` is the positive errno."""


class _Stats(ctypes.Structure):
    _fields_ = [
        ("state", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("published_entries", ctypes.c_uint64),
        ("applied_entries", ctypes.c_uint64),
        ("applied_blocks", ctypes.c_uint64),
        ("rejected_entries", ctypes.c_uint64),
        ("dropped_entries", ctypes.c_uint64),
        ("dropped_blocks", ctypes.c_uint64),
        ("deadline_missed", ctypes.c_uint64),
        ("promoted_blocks", ctypes.c_uint64),
        ("placement_gen", ctypes.c_uint64),
    ]


assert ctypes.sizeof(_Stats) == 80

_lib: Optional[ctypes.CDLL] = None


def _candidates() -> List[str]:
    out = []
    env = os.environ.get("TIERD_LIBRARY")
    if env:
        out.append(env)
    here = Path(__file__).resolve().parent
    out.append(str(here / "libtierd.so"))
    found = ctypes.util.find_library("tierd")
    if found:
        out.append(found)
    # A source checkout: clients/python/tierd -> target/release.
    out.append(str(here.parent.parent.parent / "target" / "release" / "libtierd.so"))
    return out


def load_library() -> ctypes.CDLL:
    """Loads libtierd.so once (see the module doc for where it is looked up)."""
    global _lib
    if _lib is not None:
        return _lib
    errors = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path, use_errno=True)
            break
        except OSError as e:
            errors.append(f"{path}: {e}")
    else:
        raise TierdError(_errno.ENOENT, "libtierd.so not found; set TIERD_LIBRARY. Tried: " + "; ".join(errors))
    p, u32, u64, sz, i = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_int
    u64p = ctypes.POINTER(ctypes.c_uint64)
    sigs = {
        "tierd_connect": (p, [ctypes.c_char_p]),
        "tierd_register": (i, [p, p, sz, sz, ctypes.POINTER(u32)]),
        "tierd_hint": (i, [p, u32, i, u64p, sz]),
        "tierd_hint_prefetch": (i, [p, u32, u64p, sz, u32]),
        "tierd_hint_range": (i, [p, u32, i, u64, u32, u32]),
        "tierd_placement": (i, [p, u32, u64]),
        "tierd_placement_generation": (ctypes.c_int64, [p, u32]),
        "tierd_pool_open": (i, [p, ctypes.c_char_p, sz, ctypes.POINTER(i)]),
        "tierd_pool_open_flags": (i, [p, ctypes.c_char_p, sz, u32, ctypes.POINTER(i)]),
        "tierd_close": (None, [p]),
        "tierd_unregister": (i, [p, u32]),
        "tierd_advise_node": (i, [p, sz, i, ctypes.POINTER(i)]),
        "tierd_bind_node": (i, [p, sz, i]),
        "tierd_relocations": (i, [p, u32, u64p, ctypes.POINTER(ctypes.c_int32), sz]),
        "tierd_relocated": (i, [p, u32, u64p, sz]),
        "tierd_recycle": (i, [p, u32, u64p, sz]),
        "tierd_stats": (i, [p, u32, ctypes.POINTER(_Stats)]),
        "tierd_is_connected": (i, [p]),
        "tierd_reconnects": (ctypes.c_int64, [p]),
        "tierd_register_pinned": (
            i,
            [p, p, sz, sz, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(u32), sz, ctypes.POINTER(u32)],
        ),
        "tierd_moved": (i, [p, u32, u64, u64, u32]),
        "tierd_declined": (i, [p, u32, u64p, sz]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    _lib = lib
    return lib


def _check(rc: int, what: str) -> int:
    if rc < 0:
        msg = f"{what}: {os.strerror(-rc)}"
        if -rc == _errno.EMFILE:
            # The shared memory tierd sent with the reply could not be received.
            msg += " (descriptor limit reached: raise RLIMIT_NOFILE, ulimit -n)"
        raise TierdError(-rc, msg)
    return rc


def _blocks(blocks: Iterable[int]):
    seq = blocks if isinstance(blocks, (list, tuple)) else list(blocks)
    arr = (ctypes.c_uint64 * len(seq))(*seq)
    return arr, len(seq)


def buffer_address(buf) -> int:
    """Address of a writable buffer (mmap, bytearray, writable memoryview)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


class Client:
    """A connection to tierd. Thread-safe; close it (or use ``with``) when done."""

    def __init__(self, socket_path: Optional[str] = None):
        self._lib = load_library()
        arg = socket_path.encode() if socket_path is not None else None
        h = self._lib.tierd_connect(arg)
        if not h:
            e = ctypes.get_errno()
            msg = f"tierd_connect({socket_path or 'default'}): {os.strerror(e)}"
            if e == _errno.EACCES:
                msg += " (the socket admits root and the group of client.socket_group: is this user in it?)"
            raise TierdError(e, msg)
        self._h = ctypes.c_void_p(h)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._h:
            self._lib.tierd_close(self._h)
            self._h = None

    def _handle(self):
        if not self._h:
            raise TierdError(_errno.EBADF, "client is closed")
        return self._h

    def register(self, base: int, length: int, block_size: int) -> int:
        """Registers ``[base, base+length)`` of this process's memory; returns the region id."""
        region = ctypes.c_uint32()
        _check(
            self._lib.tierd_register(self._handle(), ctypes.c_void_p(base), length, block_size, ctypes.byref(region)),
            "tierd_register",
        )
        return region.value

    def register_buffer(self, buf, block_size: int) -> int:
        """Registers a writable, page-aligned buffer (e.g. an anonymous ``mmap``)."""
        return self.register(buffer_address(buf), len(buf), block_size)

    def unregister(self, region: int) -> None:
        _check(self._lib.tierd_unregister(self._handle(), region), "tierd_unregister")

    def hint(self, region: int, kind: int, blocks: Iterable[int]) -> int:
        """Sends ``kind`` for ``blocks``; returns how many blocks were accepted."""
        arr, n = _blocks(blocks)
        return _check(self._lib.tierd_hint(self._handle(), region, kind, arr, n), "tierd_hint")

    def hint_range(self, region: int, kind: int, first: int, n: int, deadline_ms: int = 0) -> int:
        return _check(
            self._lib.tierd_hint_range(self._handle(), region, kind, first, n, deadline_ms), "tierd_hint_range"
        )

    def prefetch(self, region: int, blocks: Iterable[int], deadline_ms: int = 0) -> int:
        """PREFETCH: tierd promotes the blocks now, to be fast within ``deadline_ms``."""
        arr, n = _blocks(blocks)
        return _check(
            self._lib.tierd_hint_prefetch(self._handle(), region, arr, n, deadline_ms), "tierd_hint_prefetch"
        )

    def placement(self, region: int, block: int) -> int:
        """NUMA node of the block, or a negative errno (-EAGAIN: not looked at yet)."""
        return self._lib.tierd_placement(self._handle(), region, block)

    def placement_generation(self, region: int) -> int:
        return _check(self._lib.tierd_placement_generation(self._handle(), region), "tierd_placement_generation")

    def pool_open(self, name: str, nbytes: int, flags: int = 0) -> int:
        """Opens the pool ``name`` (``flags``: POOL_SHARED, POOL_READ_ONLY); returns a file
        descriptor (caller closes it), read-only unless this uid created the pool and
        POOL_READ_ONLY was not asked."""
        fd = ctypes.c_int(-1)
        _check(
            self._lib.tierd_pool_open_flags(self._handle(), name.encode(), nbytes, flags, ctypes.byref(fd)),
            "tierd_pool_open_flags",
        )
        return fd.value

    def pool_mmap(self, name: str, nbytes: int) -> mmap.mmap:
        """Opens the shared pool ``name`` and maps it shared."""
        fd = self.pool_open(name, nbytes)
        try:
            return mmap.mmap(fd, nbytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)

    def advise_node(self, nbytes: int, tier: int = TIER_FAST) -> int:
        """Node a new (to be pinned) allocation of ``nbytes`` on ``tier`` should use."""
        node = ctypes.c_int(-1)
        _check(self._lib.tierd_advise_node(self._handle(), nbytes, tier, ctypes.byref(node)), "tierd_advise_node")
        return node.value

    def bind_node(self, buf, node: int) -> None:
        """mbind a writable buffer of this process to ``node``."""
        _check(self._lib.tierd_bind_node(ctypes.c_void_p(buffer_address(buf)), len(buf), node), "tierd_bind_node")

    def relocations(self, region: int, max_items: int = 4096) -> List[Tuple[int, int]]:
        """(block, node) pairs tierd wants the engine to copy (it could not move them)."""
        blocks = (ctypes.c_uint64 * max_items)()
        nodes = (ctypes.c_int32 * max_items)()
        n = _check(self._lib.tierd_relocations(self._handle(), region, blocks, nodes, max_items), "tierd_relocations")
        return [(blocks[i], nodes[i]) for i in range(n)]

    def relocated(self, region: int, blocks: Sequence[int]) -> int:
        arr, n = _blocks(blocks)
        return _check(self._lib.tierd_relocated(self._handle(), region, arr, n), "tierd_relocated")

    def recycle(self, region: int, blocks: Sequence[int]) -> None:
        """Drops the memory of blocks whose contents are dead and about to be rewritten, so
        the new contents land on the fast tier (page faults instead of migrations). They
        read as zeros afterwards. Never on memory pinned for device DMA."""
        arr, n = _blocks(blocks)
        _check(self._lib.tierd_recycle(self._handle(), region, arr, n), "tierd_recycle")

    def stats(self, region: int) -> dict:
        s = _Stats()
        _check(self._lib.tierd_stats(self._handle(), region, ctypes.byref(s)), "tierd_stats")
        return {name: getattr(s, name) for name, _ in _Stats._fields_ if not name.startswith("_")}

    @property
    def connected(self) -> bool:
        """Whether tierd is reachable now. When it goes away (restart, crash) the library
        reconnects by itself in the background and registers the same regions again
        under the same ids; other calls raise :class:`TierdError` meanwhile."""
        return _check(self._lib.tierd_is_connected(self._handle()), "tierd_is_connected") == 1

    @property
    def reconnects(self) -> int:
        """Successful reconnections so far."""
        return _check(self._lib.tierd_reconnects(self._handle()), "tierd_reconnects")

    def register_pinned(self, base: int, length: int, block_size: int, slots: Sequence[Tuple[int, int]]) -> int:
        """Registers ``[base, base+length)`` as a pinned region laid out as ``(node, count)``
        runs of slots in address order; tierd then asks for moves through
        :meth:`relocations`, answered with :meth:`moved` or :meth:`declined`
        (docs/protocol.md, "Pinned regions"). Returns the region id."""
        nodes = (ctypes.c_int32 * len(slots))(*[n for n, _ in slots])
        counts = (ctypes.c_uint32 * len(slots))(*[c for _, c in slots])
        region = ctypes.c_uint32()
        _check(
            self._lib.tierd_register_pinned(
                self._handle(), ctypes.c_void_p(base), length, block_size, nodes, counts, len(slots), ctypes.byref(region)
            ),
            "tierd_register_pinned",
        )
        return region.value

    def moved(self, region: int, src: int, dst: int, n: int = 1) -> int:
        """Pinned regions: blocks ``[src, src+n)`` now live in ``[dst, dst+n)``."""
        return _check(self._lib.tierd_moved(self._handle(), region, src, dst, n), "tierd_moved")

    def declined(self, region: int, blocks: Sequence[int]) -> int:
        """Pinned regions: these relocation requests will not be served now."""
        arr, n = _blocks(blocks)
        return _check(self._lib.tierd_declined(self._handle(), region, arr, n), "tierd_declined")
