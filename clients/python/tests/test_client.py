"""Python client against a real tierd (started here on a temp socket unless
TIERD_CLIENT_SOCKET names a running one). Run: python3 -m unittest discover clients/python/tests
"""
import errno
import mmap
import os
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tierd  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
BLOCK = 64 << 10


def start_tierd(d: Path, log):
    """Starts target/release/tierd with its sockets and state under `d`; returns the
    process and the client socket once it exists."""
    sock = str(d / "client.sock")
    (d / "tierd.toml").write_text(
        f'[daemon]\nsocket = "{d}/tierd.sock"\nstate_dir = "{d}/state"\n'
        f'[client]\nsocket = "{sock}"\n[metrics]\nenabled = false\n'
    )
    binary = ROOT / "target" / "release" / "tierd"
    proc = subprocess.Popen([str(binary), "--config", str(d / "tierd.toml")], stderr=log)
    for _ in range(200):
        if os.path.exists(sock):
            return proc, sock
        time.sleep(0.05)
    raise RuntimeError("tierd did not create " + sock)


def wait_for(cond, timeout_s=10.0):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            return False
        time.sleep(0.01)
    return True


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc = None
        cls.sock = os.environ.get("TIERD_CLIENT_SOCKET")
        if cls.sock:
            return
        cls.tmp = tempfile.TemporaryDirectory()
        cls.log = open(Path(cls.tmp.name) / "tierd.log", "w")
        cls.proc, cls.sock = start_tierd(Path(cls.tmp.name), cls.log)

    @classmethod
    def tearDownClass(cls):
        if cls.proc:
            cls.proc.terminate()
            cls.proc.wait(timeout=10)
            cls.log.close()
            cls.tmp.cleanup()

    def test_register_hint_placement(self):
        with tierd.Client(self.sock) as c:
            kv = mmap.mmap(-1, 16 * BLOCK)
            kv.write(b"\1" * len(kv))
            r = c.register_buffer(kv, BLOCK)
            self.assertEqual(c.hint(r, tierd.HINT_ACCESS, [0, 1, 2, 5]), 4)
            self.assertEqual(c.hint_range(r, tierd.HINT_COLD, 8, 4), 4)
            self.assertEqual(c.prefetch(r, [3], deadline_ms=5), 1)
            t0 = time.monotonic()
            while c.placement(r, 3) < 0 and time.monotonic() - t0 < 5:
                time.sleep(0.001)
            self.assertGreaterEqual(c.placement(r, 3), 0)
            self.assertEqual(c.placement(r, 16), -errno.ERANGE)
            while c.stats(r)["applied_entries"] < 4 and time.monotonic() - t0 < 5:
                time.sleep(0.001)
            s = c.stats(r)
            self.assertEqual(s["applied_entries"], 4)
            self.assertEqual(s["applied_blocks"], 9)
            self.assertEqual(s["rejected_entries"], 0)
            with self.assertRaises(tierd.TierdError) as e:
                c.hint(r, 99, [0])
            self.assertEqual(e.exception.errno, errno.EINVAL)
            c.unregister(r)

    def test_recycle_zeroes_only_the_named_blocks(self):
        with tierd.Client(self.sock) as c:
            kv = mmap.mmap(-1, 8 * BLOCK)  # shared anonymous: MADV_REMOVE
            kv.write(b"\7" * len(kv))
            r = c.register_buffer(kv, BLOCK)
            c.recycle(r, [5, 3, 4])
            for b in range(8):
                want = b"\0" if b in (3, 4, 5) else b"\7"
                self.assertEqual(kv[b * BLOCK : (b + 1) * BLOCK], want * BLOCK, f"block {b}")
            with self.assertRaises(tierd.TierdError) as e:
                c.recycle(r, [8])
            self.assertEqual(e.exception.errno, errno.ERANGE)
            c.unregister(r)

    def test_foreign_or_unmapped_memory_is_refused(self):
        with tierd.Client(self.sock) as c:
            with self.assertRaises(tierd.TierdError) as e:
                c.register(0x1000, BLOCK, BLOCK)  # never mapped in a process
            self.assertEqual(e.exception.errno, errno.EFAULT)

    def test_descriptor_limit_is_named(self):
        import resource

        with tierd.Client(self.sock) as c:
            kv = mmap.mmap(-1, 4 * BLOCK)
            kv.write(b"\1" * len(kv))
            saved = resource.getrlimit(resource.RLIMIT_NOFILE)
            # The lowest free descriptor number as the limit: the region's shared memory
            # cannot be received.
            lowest = os.dup(0)
            os.close(lowest)
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, saved[1]))
            try:
                with self.assertRaises(tierd.TierdError) as e:
                    c.register_buffer(kv, BLOCK)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, saved)
            self.assertEqual(e.exception.errno, errno.EMFILE)
            self.assertIn("raise RLIMIT_NOFILE", str(e.exception))
            c.unregister(c.register_buffer(kv, BLOCK))

    def test_pool_is_shared(self):
        with tierd.Client(self.sock) as c1, tierd.Client(self.sock) as c2:
            a = c1.pool_mmap("py-test-pool", 1 << 20)
            b = c2.pool_mmap("py-test-pool", 1 << 20)
            a[100:105] = b"hello"
            self.assertEqual(b[100:105], b"hello")
            self.assertGreaterEqual(c1.advise_node(1 << 20, tierd.TIER_SLOWEST), 0)


@unittest.skipIf(os.environ.get("TIERD_CLIENT_SOCKET"), "kills its own tierd")
class ReconnectTest(unittest.TestCase):
    def test_kill_and_restart(self):
        with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "tierd.log", "w") as log:
            d = Path(tmp)
            proc, sock = start_tierd(d, log)
            try:
                with tierd.Client(sock) as c:
                    kv = mmap.mmap(-1, 8 * BLOCK)
                    kv.write(b"\3" * len(kv))
                    r = c.register_buffer(kv, BLOCK)
                    self.assertTrue(c.connected)
                    proc.kill()
                    proc.wait()
                    # The header of a killed tierd still says live; the library knows better.
                    self.assertTrue(wait_for(lambda: not c.connected))
                    self.assertEqual(c.stats(r)["state"], 1)  # TIERD_REGION_CLOSED
                    self.assertEqual(c.hint(r, tierd.HINT_ACCESS, [0, 1]), 0)
                    proc, _ = start_tierd(d, log)
                    self.assertTrue(wait_for(lambda: c.connected), "reconnected")
                    self.assertEqual(c.reconnects, 1)
                    # Same region id, new ring on the new tierd.
                    self.assertEqual(c.stats(r)["state"], 0)
                    self.assertEqual(c.hint(r, tierd.HINT_ACCESS, [0, 1]), 2)
                    self.assertTrue(wait_for(lambda: c.stats(r)["applied_entries"] == 1))
                    self.assertEqual(kv[:BLOCK], b"\3" * BLOCK)
            finally:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    unittest.main()
