#!/usr/bin/env python3
"""A vLLM-shaped KV block manager that tells tierd what it does, replaying a trace.

    kv_block_manager.py [--trace PATH] [--mode hints|none] [--socket PATH]
                        [--blocks N] [--block-kib K] [--requests N] [--steps S]

The manager owns a pool of physical KV blocks (one anonymous mapping), a block table
per request, a prefix cache keyed by the trace's block hashes (equal hash = reusable
prefix KV, Mooncake's 512-token blocks) and LRU eviction of unreferenced cached blocks.
For each request of the Mooncake conversation trace (Apache-2.0, kvcache-ai/Mooncake
FAST'25 release; attribution in ../shared/traces/README.md) it:

1. admits it: cached prefix blocks are reused (PREFETCH hint, they are about to be
   read), missing ones allocated, evicting the LRU cached block when the pool is full;
2. prefills: reads the reused blocks, recycles the new ones (their old pages are
   dropped so the new KV is allocated on the fast tier) and writes them (ACCESS hint);
3. decodes `--steps` steps, each reading every block of the request (ACCESS hint) and
   appending output blocks;
4. finishes: prompt blocks stay cached (the LRU tail gets a COLD hint), output blocks
   are freed (FREE hint).

Every block read is checked with move_pages(2) on our own pages (independent of tierd)
and counted as served from the fast tier when its node has CPUs. `--mode none` sends no
hints (no tierd, or tierd sampling only when the process is managed by tierctl).
Prints RESULT lines: fast_read_fraction, prefix_hit_rate, reads, requests.
"""

import argparse
import collections
import ctypes
import json
import mmap
import os
import sys
import time
from pathlib import Path

PAGE = mmap.PAGESIZE
SYS_MOVE_PAGES = 279  # x86_64
DEFAULT_TRACE = Path(__file__).resolve().parents[3] / ".." / "shared" / "traces" / "mooncake_conversation_trace.jsonl"
TOKENS_PER_BLOCK = 512

_libc = ctypes.CDLL(None, use_errno=True)


def fast_nodes():
    """Nodes with CPUs (the fast tier on a CXL-style machine)."""
    out = set()
    for d in Path("/sys/devices/system/node").glob("node[0-9]*"):
        if (d / "cpulist").read_text().strip():
            out.add(int(d.name[4:]))
    return out


def nodes_of(addrs):
    """NUMA node of each of our own pages (negative errno if not present)."""
    n = len(addrs)
    pages = (ctypes.c_void_p * n)(*addrs)
    status = (ctypes.c_int * n)()
    rc = _libc.syscall(SYS_MOVE_PAGES, 0, ctypes.c_ulong(n), pages, None, status, 0)
    if rc < 0:
        raise OSError(ctypes.get_errno(), "move_pages")
    return list(status)


class BlockManager:
    def __init__(self, nblocks, block_bytes, client=None):
        self.nblocks, self.block_bytes = nblocks, block_bytes
        self.pool = mmap.mmap(-1, nblocks * block_bytes)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.pool))
        self.free = collections.deque(range(nblocks))
        self.cached = collections.OrderedDict()  # prefix hash -> block (unreferenced, LRU order)
        self.in_use = {}  # prefix hash -> [block, refcount]
        self.client = client
        self.region = client.register(self.base, nblocks * block_bytes, block_bytes) if client else None
        self.fast = fast_nodes()
        self.reads = self.fast_reads = self.hits = self.lookups = 0

    def hint(self, kind, blocks):
        if self.client and blocks:
            self.client.hint(self.region, kind, sorted(blocks))

    def _allocate(self):
        if self.free:
            return self.free.popleft()
        if not self.cached:
            raise MemoryError("KV pool exhausted by running requests")
        _, b = self.cached.popitem(last=False)  # evict the least recently used prefix
        return b

    def acquire_prefix(self, h):
        """The block holding prefix hash h, and whether it was a cache hit."""
        self.lookups += 1
        if h in self.in_use:
            self.in_use[h][1] += 1
            self.hits += 1
            return self.in_use[h][0], True
        if h in self.cached:
            b = self.cached.pop(h)
            self.in_use[h] = [b, 1]
            self.hits += 1
            return b, True
        b = self._allocate()
        self.in_use[h] = [b, 1]
        return b, False

    def release_prefix(self, h):
        e = self.in_use[h]
        e[1] -= 1
        if e[1] == 0:
            del self.in_use[h]
            self.cached[h] = e[0]

    def write(self, blocks):
        # New contents: drop the blocks' old pages first, so the writes allocate on the
        # fast tier (tierd keeps headroom there) instead of where the slot last lived.
        if self.client and blocks:
            self.client.recycle(self.region, sorted(blocks))
        for b in blocks:
            off = b * self.block_bytes
            self.pool[off : off + self.block_bytes : PAGE] = b"\x01" * (self.block_bytes // PAGE)

    def read(self, blocks):
        nodes = nodes_of([self.base + b * self.block_bytes for b in blocks])
        for b, n in zip(blocks, nodes):
            off = b * self.block_bytes
            self.pool[off : off + self.block_bytes : PAGE]  # touch every page
            self.reads += 1
            self.fast_reads += n in self.fast


def replay(args):
    from_tierd = None
    if args.mode == "hints":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import tierd

        from_tierd = tierd.Client(args.socket)
    block_bytes = args.block_kib << 10
    m = BlockManager(args.blocks, block_bytes, from_tierd)
    kinds = {}
    if from_tierd:
        import tierd

        kinds = dict(access=tierd.HINT_ACCESS, cold=tierd.HINT_COLD, free=tierd.HINT_FREE)
    t0 = time.monotonic()
    with open(args.trace) as f:
        for i, line in enumerate(f):
            if i >= args.requests:
                break
            req = json.loads(line)
            prompt, reused = [], []
            for h in req["hash_ids"]:
                b, hit = m.acquire_prefix(h)
                prompt.append(b)
                if hit:
                    reused.append(b)
            if from_tierd and reused:
                from_tierd.prefetch(m.region, sorted(set(reused)), deadline_ms=5)
            m.read(reused)
            m.write([b for b in prompt if b not in reused])
            m.hint(kinds.get("access"), set(prompt))
            out_blocks = []
            n_out = max(1, req["output_length"] // TOKENS_PER_BLOCK + 1)
            for step in range(args.steps):
                if len(out_blocks) < n_out * (step + 1) // args.steps:
                    b = m._allocate()
                    out_blocks.append(b)
                    m.write([b])
                m.read(prompt + out_blocks)
                m.hint(kinds.get("access"), set(prompt + out_blocks))
            for h in req["hash_ids"]:
                m.release_prefix(h)
            m.free.extend(out_blocks)
            m.hint(kinds.get("free"), set(out_blocks))
            lru_tail = list(m.cached.values())[: max(1, len(m.cached) // 4)]
            m.hint(kinds.get("cold"), set(lru_tail))
    secs = time.monotonic() - t0
    tag = f"kv.{args.mode}"
    print(f"RESULT {tag}.requests={min(i + 1, args.requests)}")
    print(f"RESULT {tag}.reads={m.reads}")
    print(f"RESULT {tag}.fast_read_fraction={m.fast_reads / max(1, m.reads):.4f}")
    print(f"RESULT {tag}.prefix_hit_rate={m.hits / max(1, m.lookups):.4f}")
    print(f"RESULT {tag}.seconds={secs:.1f}")
    if from_tierd:
        print(f"RESULT {tag}.tierd_stats={json.dumps(from_tierd.stats(m.region), separators=(',', ':'))}")
        from_tierd.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trace", default=str(DEFAULT_TRACE))
    p.add_argument("--mode", choices=["hints", "none"], default="hints")
    p.add_argument("--socket", default=None)
    p.add_argument("--blocks", type=int, default=4096)
    p.add_argument("--block-kib", type=int, default=64)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--steps", type=int, default=4)
    replay(p.parse_args())


if __name__ == "__main__":
    main()
