"""A KV offloading connector on a tierd-placed pinned pool (the shape of vLLM's CPU
offloading connector or LMCache's local CPU backend): the engine stores KV blocks it
evicts from the GPU, looks them up by their prefix hash, loads them back, and evicts
them when the pool is full. tierd decides which blocks sit on the fast node; the
connector serves its relocation requests between steps.

    python3 offload_connector.py [--socket PATH] [--fast-slots N] [--slow-slots N]
                                 [--steps N] [--pin none|cuda]

``--pin cuda`` pins the pool with ``cudaHostRegister`` through torch (the GPU's DMA
then reads it; tierd can only relocate it); ``none`` leaves it unpinned (a demo without
a GPU). The replay is synthetic: a hot set of prefixes drifts every 100 steps.
"""

import argparse
import os
import random
import sys
import time
from collections import OrderedDict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tierd import Client  # noqa: E402
from tierd.kvpool import PinnedKVPool  # noqa: E402

BLOCK = 64 << 10


def cuda_pin(address, length):
    import torch

    rc = torch.cuda.cudart().cudaHostRegister(address, length, 0)
    if rc != 0:
        raise OSError(f"cudaHostRegister: {rc}")
    return address


class OffloadConnector:
    """allocate / lookup / load / store / evict over a pinned pool, LRU eviction."""

    def __init__(self, pool: PinnedKVPool):
        self.pool = pool
        self.lru: "OrderedDict[object, None]" = OrderedDict()

    def lookup(self, key) -> bool:
        return self.pool.lookup(key)

    def allocate(self, key) -> int:
        while True:
            try:
                return self.pool.allocate(key)
            except MemoryError:
                old, _ = self.lru.popitem(last=False)
                self.evict(old)

    def store(self, key, data) -> None:
        if not self.pool.lookup(key):
            self.allocate(key)
        self.pool.store(key, data)
        self.lru[key] = None
        self.lru.move_to_end(key)

    def load(self, key, out) -> None:
        self.pool.load(key, out)
        self.lru.move_to_end(key)

    def evict(self, key) -> None:
        self.pool.evict(key)
        self.lru.pop(key, None)

    def step_done(self) -> None:
        """Between engine steps: let tierd's moves happen (copies or re-points)."""
        self.pool.serve()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket")
    ap.add_argument("--fast-node", type=int, default=0)
    ap.add_argument("--slow-node", type=int, default=1)
    ap.add_argument("--fast-slots", type=int, default=64)
    ap.add_argument("--slow-slots", type=int, default=192)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--pin", choices=["none", "cuda"], default="none")
    a = ap.parse_args()
    layout = [(a.fast_node, a.fast_slots), (a.slow_node, a.slow_slots)]
    with Client(a.socket) as c:
        pool = PinnedKVPool(c, layout, BLOCK, pin=cuda_pin if a.pin == "cuda" else None)
        conn = OffloadConnector(pool)
        prefixes = list(range(4 * (a.fast_slots + a.slow_slots) // 3))
        out = bytearray(BLOCK)
        hits = fast_hits = 0
        rng = random.Random(1)
        for step in range(a.steps):
            hot = prefixes[(step // 100) * 16 : (step // 100) * 16 + a.fast_slots // 2]
            for _ in range(8):
                key = rng.choice(hot) if rng.random() < 0.9 else rng.choice(prefixes)
                if conn.lookup(key):
                    hits += 1
                    fast_hits += pool.node_of(key) == a.fast_node
                    conn.load(key, out)
                else:
                    conn.store(key, key.to_bytes(8, "little") * (BLOCK // 8))
            conn.step_done()
            time.sleep(0.01)
        print(f"hits {hits}, of which on the fast node {fast_hits}; {pool.stats()}")
        pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
