#!/usr/bin/env python3
"""The Python client end to end: register a KV cache, hint, read placement, share a pool.

    python3 examples/basic.py [SOCKET]
"""
import mmap
import sys
import time

try:
    import tierd
except ImportError:  # run from a source checkout without pip install
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    import tierd

BLOCK = 64 << 10
NBLOCKS = 64


def main() -> int:
    sock = sys.argv[1] if len(sys.argv) > 1 else None
    with tierd.Client(sock) as c:
        print("allocate pinned memory on node", c.advise_node(NBLOCKS * BLOCK, tierd.TIER_FAST))
        kv = mmap.mmap(-1, NBLOCKS * BLOCK)
        kv.write(b"\1" * len(kv))
        region = c.register_buffer(kv, BLOCK)
        c.hint(region, tierd.HINT_ACCESS, range(0, 8))
        c.hint(region, tierd.HINT_COLD, [40, 41])
        t0 = time.monotonic()
        c.prefetch(region, [10, 11], deadline_ms=10)
        while c.placement(region, 11) < 0 and time.monotonic() - t0 < 5:
            time.sleep(0.0005)
        print(f"block 11 on node {c.placement(region, 11)} after {(time.monotonic() - t0) * 1e3:.1f} ms")
        a = c.pool_mmap("basic-example", 1 << 20)
        b = c.pool_mmap("basic-example", 1 << 20)
        a[:6] = b"prompt"
        assert b[:6] == b"prompt", "two mappings of one pool share memory"
        time.sleep(0.05)
        print("stats", c.stats(region))
        c.unregister(region)
    print("basic: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
