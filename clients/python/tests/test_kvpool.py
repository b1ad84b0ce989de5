"""The pinned KV pool's bookkeeping against a fake tierd client (no daemon, no NUMA):
relocation requests served by copy or by re-point to a shadow, writes dropping shadows,
full nodes declining. Run: python3 -m unittest discover clients/python/tests
"""
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tierd import HINT_ACCESS, HINT_FREE, HINT_WRITTEN  # noqa: E402
from tierd.kvpool import PinnedKVPool  # noqa: E402
from tierd.slots import COPY, DECLINE, REPOINT, SlotTable  # noqa: E402

BLOCK = 4096
FAST, SLOW = 0, 1


class FakeClient:
    """What the pool calls on a Client, recorded; `wanted` plays tierd's requests."""

    def __init__(self):
        self.hints, self.moves, self.declines, self.wanted = [], [], [], []
        self.layout = None

    def bind_node(self, buf, node):
        pass

    def register_pinned(self, base, length, block_size, layout):
        self.layout = (length, block_size, list(layout))
        return 7

    def hint(self, region, kind, blocks):
        self.hints.append((kind, list(blocks)))
        return len(self.hints[-1][1])

    def relocations(self, region):
        out, self.wanted = self.wanted, []
        return out

    def moved(self, region, src, dst, n=1):
        self.moves.append((src, dst))
        return n

    def declined(self, region, blocks):
        self.declines.extend(blocks)
        return len(blocks)

    def unregister(self, region):
        pass


class SlotTableTest(unittest.TestCase):
    def test_promote_by_copy_demote_by_repoint(self):
        t = SlotTable([(FAST, 2), (SLOW, 3)])
        self.assertEqual(t.allocate("a", SLOW), 2)
        self.assertEqual(t.serve(2, FAST), (COPY, 0))
        self.assertEqual(t.serve(0, SLOW), (REPOINT, 2))
        t.written("a")
        self.assertEqual(t.serve(2, FAST), (COPY, 0))
        self.assertEqual((t.copies, t.repoints), (2, 1))

    def test_full_node_declines(self):
        t = SlotTable([(FAST, 1), (SLOW, 1)])
        t.allocate("a", FAST)
        t.allocate("b", SLOW)
        self.assertEqual(t.serve(1, FAST), (DECLINE, -1), "no fast slot left")
        self.assertEqual(t.serve(0, SLOW), (DECLINE, -1), "no slow slot left")
        t.free("b")
        self.assertEqual(t.serve(0, SLOW), (COPY, 1))
        self.assertEqual(t.declines, 2)


class PinnedKVPoolTest(unittest.TestCase):
    def setUp(self):
        self.c = FakeClient()
        self.pool = PinnedKVPool(self.c, [(FAST, 2), (SLOW, 4)], BLOCK)

    def tearDown(self):
        self.pool.close()

    def test_registers_its_layout(self):
        self.assertEqual(self.c.layout, (6 * BLOCK, BLOCK, [(FAST, 2), (SLOW, 4)]))
        self.assertEqual(self.pool.region, 7)

    def test_connector_calls(self):
        p = self.pool
        self.assertFalse(p.lookup("k1"))
        s = p.store("k1", b"\x01" * BLOCK, node=SLOW)
        self.assertEqual(p.node_of("k1"), SLOW)
        self.assertIn((HINT_WRITTEN, [s]), self.c.hints)
        self.assertTrue(p.lookup("k1"))
        out = bytearray(BLOCK)
        p.load("k1", out)
        self.assertEqual(bytes(out), b"\x01" * BLOCK)
        self.assertIn((HINT_ACCESS, [s]), self.c.hints)
        p.evict("k1")
        self.assertFalse(p.lookup("k1"))
        self.assertIn((HINT_FREE, [s]), self.c.hints)
        # New blocks go to the fast node while it has room.
        p.store("k2", b"\x02")
        p.store("k3", b"\x03")
        p.store("k4", b"\x04")
        self.assertEqual([p.node_of(k) for k in ("k2", "k3", "k4")], [FAST, FAST, SLOW])

    def test_relocations_copy_then_repoint(self):
        p = self.pool
        src = p.store("hot", b"\x05" * BLOCK, node=SLOW)
        self.c.wanted = [(src, FAST)]
        self.assertEqual(p.serve()[COPY], 1)
        self.assertEqual(p.node_of("hot"), FAST)
        dst = self.c.moves[-1][1]
        self.assertEqual(self.c.moves[-1], (src, dst))
        self.assertEqual(bytes(p.view("hot")), b"\x05" * BLOCK)
        # Demoted again, unwritten: back to its shadow without a copy.
        self.c.wanted = [(dst, SLOW)]
        self.assertEqual(p.serve()[REPOINT], 1)
        self.assertEqual(self.c.moves[-1], (dst, src))
        self.assertEqual(p.stats()["avoided_bytes"], BLOCK)
        self.assertEqual(p.stats()["copied_bytes"], BLOCK)
        # A request the pool cannot serve is declined back to tierd.
        self.c.wanted = [(5, FAST)]
        self.assertEqual(p.serve()[DECLINE], 1)
        self.assertEqual(self.c.declines, [5])

    def test_numpy_view(self):
        try:
            import numpy  # noqa: F401
        except ImportError:
            self.skipTest("numpy not installed")
        self.pool.store("n", bytes(range(16)))
        a = self.pool.array("n")
        self.assertEqual(list(a[:4]), [0, 1, 2, 3])
        a[0] = 9
        self.assertEqual(self.pool.view("n")[0], 9, "a view, not a copy")


if __name__ == "__main__":
    unittest.main()
