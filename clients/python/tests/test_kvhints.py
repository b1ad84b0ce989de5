"""The llama.cpp KV hints adapter (tierd.kvhints): its policy against a fake client, and
once against a real tierd on the host (skipped when target/release/tierd is not built).
Run: python3 -m unittest discover clients/python/tests
"""
import mmap
import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tierd  # noqa: E402
from tierd.kvhints import KvHints, KvTensor, kv_tensor  # noqa: E402

BLOCK = 64 << 10
ROW = 512  # one cell of one layer's K (or V): 256 f16 values
CELLS = 8192  # cells per sequence slot
STREAM = ROW * CELLS  # 4 MiB
SLOTS = 4


class FakeClient:
    """Records what the adapter asks of tierd."""

    def __init__(self, accept=None):
        self.regions = {}
        self.hints = []
        self.unregistered = []
        self.accept = accept  # blocks accepted per hint (None: all)

    def register(self, base, length, block_size):
        assert base % block_size == 0 and length % block_size == 0, (base, length)
        rid = len(self.regions) + 1
        self.regions[rid] = (base, length, block_size)
        return rid

    def hint_range(self, region, kind, first, n, deadline_ms=0):
        self.hints.append((region, kind, first, n, deadline_ms))
        return n if self.accept is None else min(n, self.accept)

    def unregister(self, region):
        self.unregistered.append(region)


def layout(base=0x7F0000000040, layers=2):
    """K and V of `layers` layers back to back, the first 64 bytes past a block boundary
    (as ggml places tensors: 64-byte alignment only)."""
    out, addr = [], base
    for layer in range(layers):
        for is_v in (False, True):
            out.append(KvTensor(layer, is_v, addr, STREAM * SLOTS, ROW, STREAM))
            addr += STREAM * SLOTS
    return out


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class KvHintsTest(unittest.TestCase):
    def test_registers_the_whole_blocks_inside_each_tensor(self):
        c = FakeClient()
        tensors = layout()
        h = KvHints(c, tensors, BLOCK)
        self.assertEqual(len(h.regions), 4)
        for t, (base, length, bs) in zip(tensors, c.regions.values()):
            self.assertEqual(bs, BLOCK)
            self.assertGreaterEqual(base, t.base)
            self.assertLess(base - t.base, BLOCK)
            self.assertLessEqual(base + length, t.base + t.nbytes)
            self.assertLess(t.base + t.nbytes - (base + length), BLOCK)

    def test_a_slot_maps_to_its_own_stream_blocks(self):
        c = FakeClient()
        h = KvHints(c, layout(base=0x7F0000000000), BLOCK)  # block-aligned: exact
        # Slot 2, 1000 cells = 512000 bytes from 2 * 4 MiB: blocks 128 .. 135 (7.8 blocks).
        got = h.blocks(2, 1000)
        self.assertEqual(len(got), 4)
        for region, first, n in got:
            self.assertEqual((first, n), (2 * STREAM // BLOCK, 8))
        self.assertEqual(h.blocks(2, 0), [])
        # The last slot's full stream ends at the region's end.
        for region, first, n in h.blocks(SLOTS - 1, CELLS):
            self.assertEqual(first + n, SLOTS * STREAM // BLOCK)

    def test_misaligned_tensor_clips_to_registered_blocks(self):
        c = FakeClient()
        h = KvHints(c, layout(), BLOCK)  # 64 bytes past a boundary
        # Slot 0's first cell lies before the first whole block: nothing to hint.
        self.assertEqual(h.blocks(0, 1), [])
        for region, first, n in h.blocks(0, 200):  # 102400 bytes: reaches block 0
            self.assertEqual((first, n), (0, 1))

    def test_events_send_the_right_kinds(self):
        c = FakeClient()
        clock = Clock()
        h = KvHints(c, layout(), BLOCK, access_interval_s=0.2, clock=clock)
        h.scheduled(1, 4096, deadline_ms=50)
        self.assertEqual({k for _, k, *_ in c.hints}, {tierd.HINT_PREFETCH})
        self.assertEqual({d for *_, d in c.hints}, {50})
        c.hints.clear()
        self.assertTrue(h.step(1, 4097))
        self.assertFalse(h.step(1, 4098), "a second ACCESS within the interval")
        self.assertTrue(h.step(2, 10), "another sequence has its own interval")
        clock.t += 0.25
        self.assertTrue(h.step(1, 4099))
        kinds = [k for _, k, *_ in c.hints]
        self.assertEqual(set(kinds), {tierd.HINT_ACCESS})
        c.hints.clear()
        h.idle(1, 4099)
        self.assertEqual({k for _, k, *_ in c.hints}, {tierd.HINT_COLD})
        self.assertTrue(h.step(1, 4100), "idle resets the interval")
        c.hints.clear()
        h.drop(1, 4100)
        self.assertEqual({k for _, k, *_ in c.hints}, {tierd.HINT_FREE})
        self.assertEqual(len(c.hints), 4)  # one entry per K/V tensor

    def test_counts_blocks_the_ring_dropped(self):
        c = FakeClient(accept=1)
        h = KvHints(c, layout(base=0x7F0000000000), BLOCK)
        h.scheduled(0, CELLS)  # 64 blocks per tensor, 1 accepted
        self.assertEqual(h.sent, 4)
        self.assertEqual(h.dropped_blocks, 4 * 63)

    def test_close_unregisters_and_bad_input_is_refused(self):
        c = FakeClient()
        h = KvHints(c, layout(), BLOCK)
        regions = h.regions
        h.close()
        self.assertEqual(c.unregistered, regions)
        h.close()
        self.assertEqual(c.unregistered, regions, "close twice unregisters once")
        h = KvHints(c, layout(), BLOCK)
        with self.assertRaises(ValueError):
            h.blocks(SLOTS, 1)  # no such slot
        with self.assertRaises(ValueError):
            h.blocks(0, CELLS + 1)
        with self.assertRaises(ValueError):
            KvHints(c, [], BLOCK)
        with self.assertRaises(ValueError):
            KvHints(c, layout(), 3 << 10)

    def test_kv_tensor_names(self):
        t = kv_tensor("cache_v_l3", 0x1000, 100, 10, 50)
        self.assertEqual((t.layer, t.is_v, t.base), (3, True, 0x1000))
        self.assertEqual(kv_tensor("cache_mtp_k_l0", 0, 1, 1, 1).layer, 0)
        self.assertIsNone(kv_tensor("blk.0.attn_k.weight", 0, 1, 1, 1))
        self.assertIsNone(kv_tensor("cache_k_l3 (view)", 0, 1, 1, 1))


ROOT = Path(__file__).resolve().parents[3]


@unittest.skipUnless((ROOT / "target" / "release" / "tierd").exists(), "target/release/tierd not built")
class KvHintsAgainstTierdTest(unittest.TestCase):
    def test_hints_reach_tierd(self):
        from test_client import start_tierd  # noqa: E402 (same directory)

        with tempfile.TemporaryDirectory() as d, open(Path(d) / "tierd.log", "w") as log:
            proc, sock = start_tierd(Path(d), log)
            try:
                # A fake KV cache: 2 layers x K/V x 2 slots of 64 cells x 4 KiB rows,
                # in one anonymous mapping, the tensors 64 bytes apart from blocks.
                row, cells, slots = 4096, 64, 2
                stream = row * cells
                buf = mmap.mmap(-1, 4 * stream * slots + 2 * BLOCK)
                buf.write(b"\1" * len(buf))
                base = tierd.buffer_address(buf) + 64
                tensors = [KvTensor(i // 2, i % 2 == 1, base + i * stream * slots, stream * slots, row, stream)
                           for i in range(4)]
                with tierd.Client(sock) as c:
                    h = KvHints(c, tensors, BLOCK)
                    h.scheduled(1, cells)
                    h.step(1, cells)
                    h.idle(1, cells)
                    h.drop(0, 32)
                    want = h.sent
                    self.assertEqual(want, 16)
                    t0 = time.monotonic()
                    while time.monotonic() - t0 < 10:
                        applied = sum(c.stats(r)["applied_entries"] for r in h.regions)
                        if applied >= want:
                            break
                        time.sleep(0.01)
                    self.assertEqual(applied, want)
                    self.assertEqual(sum(c.stats(r)["rejected_entries"] for r in h.regions), 0)
                    h.close()
            finally:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    unittest.main()
