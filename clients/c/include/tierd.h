/*
 * tierd.h: the C API of tierd's shared-memory protocol for inference engines.
 *
 * Link with -ltierd (`pkg-config --cflags --libs tierd` once `make install` put it in
 * place; in a source tree target/release/libtierd.so or libtierd.a; the static library
 * also needs -lpthread -ldl -lm, `pkg-config --static`). An engine connects once, registers the address ranges of
 * its KV cache as regions of fixed-size blocks, then sends hints about blocks (a ring
 * write in shared memory: no syscall, never blocks) and reads where each block lives
 * (an atomic load). Protocol and byte layout: docs/protocol.md.
 *
 * Every int-returning call returns a negative errno on failure. Thread-safe: one
 * tierd_client may be shared by threads (hints to one region take a short lock).
 */
#ifndef TIERD_H
#define TIERD_H

#include <stddef.h>
#include <stdint.h>

/* The ABI version: the N of libtierd.so.N (its SONAME). Raised whenever a function's
 * signature or a struct's layout changes incompatibly; clients/c/build.rs and the
 * Makefile read it from here. */
#define TIERD_SOVERSION 0

#ifdef __cplusplus
extern "C" {
#endif

/* Hint kinds (the `kind` of tierd_hint). */
#define TIERD_HINT_ACCESS 1    /* blocks used now */
#define TIERD_HINT_PREFETCH 2  /* needed soon: use tierd_hint_prefetch for a deadline */
#define TIERD_HINT_COLD 3      /* not needed soon: demote first */
#define TIERD_HINT_FREE 4      /* contents dead: cheapest placement, never promote */
#define TIERD_HINT_PIN_FAST 5  /* keep on the fast tier until TIERD_HINT_UNPIN */
#define TIERD_HINT_UNPIN 6
#define TIERD_HINT_RELOCATED 7 /* used by tierd_relocated() */
#define TIERD_HINT_MOVED 8     /* pinned regions: used by tierd_moved() */
#define TIERD_HINT_DECLINED 9  /* pinned regions: used by tierd_declined() */
#define TIERD_HINT_WRITTEN 10  /* contents changed: a shadow copy of them is dropped */

/* Tiers for tierd_advise_node. */
#define TIERD_TIER_FAST 0
#define TIERD_TIER_SLOWEST (-1)

/* Region states (tierd_region_stats.state). */
#define TIERD_REGION_LIVE 0
#define TIERD_REGION_CLOSED 1
#define TIERD_REGION_CORRUPT 2

/* Layout constants of the shared memory (docs/protocol.md), for tools that read it. */
#define TIERD_SHM_MAGIC 0x4d48534452454954ULL /* "TIERDSHM" little-endian */
#define TIERD_SHM_VERSION 1
#define TIERD_SHM_HEADER_BYTES 320
#define TIERD_SHM_ENTRY_BYTES 24

typedef struct tierd_client tierd_client;

/* Counters of one region, read from its shared header. */
typedef struct tierd_region_stats {
    uint32_t state;
    uint32_t _pad;
    uint64_t published_entries; /* ring entries the client published */
    uint64_t applied_entries;   /* ... tierd applied */
    uint64_t applied_blocks;    /* blocks those entries covered */
    uint64_t rejected_entries;  /* malformed entries tierd skipped */
    uint64_t dropped_entries;   /* entries dropped because the ring was full */
    uint64_t dropped_blocks;    /* blocks those entries covered */
    uint64_t deadline_missed;   /* PREFETCHes not on the fast tier by their deadline */
    uint64_t promoted_blocks;   /* PREFETCH / PIN_FAST blocks read back on the fast tier */
    uint64_t placement_gen;     /* bumped on every placement-table update */
} tierd_region_stats;

#ifdef __cplusplus
static_assert(sizeof(tierd_region_stats) == 80, "tierd_region_stats layout");
#else
_Static_assert(sizeof(tierd_region_stats) == 80, "tierd_region_stats layout");
#endif

/* --- The core API (names fixed) --- */

/* Connects; NULL path: $TIERD_CLIENT_SOCKET or /run/tierd/client.sock.
 * Returns NULL with errno set on failure. */
tierd_client *tierd_connect(const char *socket_path);

/* Registers [base, base+len) of this process's own memory as blocks of block_size
 * bytes (base page-aligned, block_size a multiple of the page size, len a multiple of
 * block_size). *region gets the region id. -EFAULT: not (entirely) mapped in this
 * process; -EDQUOT: per-uid region limit; -EINVAL: bad alignment; -EMFILE: this
 * process is at its descriptor limit (RLIMIT_NOFILE) and could not receive the region's
 * shared memory (the registration is undone). */
int tierd_register(tierd_client *, void *base, size_t len, size_t block_size, uint32_t *region);

/* A hint for blocks[0..n] (runs of consecutive blocks travel as one ring entry).
 * Returns the number of blocks accepted: fewer than n when the ring was full (the rest
 * were dropped and counted in dropped_blocks). Never blocks. */
int tierd_hint(tierd_client *, uint32_t region, int kind, const uint64_t *blocks, size_t n);

/* PREFETCH blocks[0..n]: tierd promotes them now so they are on the fast tier within
 * deadline_ms (0: as soon as possible). Returns blocks accepted, as tierd_hint. */
int tierd_hint_prefetch(tierd_client *, uint32_t region, const uint64_t *blocks, size_t n,
                        uint32_t deadline_ms);

/* Node holding the block (its first page), or -errno: -EAGAIN not looked at yet,
 * -ENOENT not populated, -ERANGE outside the region, -EINVAL unknown region.
 * Written as soon as tierd moves the block (a PREFETCH / PIN_FAST promotion, a policy
 * move); moves tierd did not make show within one placement sweep (every 100 ms for a
 * small registration, client.placement_sweep_pages_per_s sets it for large ones). */
int tierd_placement(tierd_client *, uint32_t region, uint64_t block);

/* Opens (creating on first use) the caller's uid's pool `name` ([A-Za-z0-9._-], <= 64
 * bytes) of len bytes; *fd gets a read-write descriptor to mmap(MAP_SHARED). Every
 * process of the same uid gets the same memory, placed on client.pool_tier (its pages
 * are allocated, and charged, when a process first touches them). -EDQUOT (pools per
 * uid), -EFBIG (client.max_pool_bytes). */
int tierd_pool_open(tierd_client *, const char *name, size_t len, int *fd);

/* tierd_pool_open with flags. Without TIERD_POOL_SHARED, `name` is in the caller's uid's
 * own namespace (other users cannot see or squat it); with it, in the namespace shared
 * by all users (creating one needs root or a group in client.allowed_groups; opening
 * one, the creator's uid, root or such a group). Only the creator's uid gets a writable
 * descriptor, and only without TIERD_POOL_READ_ONLY: others must mmap PROT_READ and
 * cannot recycle (MADV_REMOVE) the pool. Returns 0 (read-write *fd), 1 (read-only *fd)
 * or -errno (-EACCES, -EDQUOT, -EFBIG, -EINVAL). */
#define TIERD_POOL_SHARED 1u
#define TIERD_POOL_READ_ONLY 2u
int tierd_pool_open_flags(tierd_client *, const char *name, size_t len, uint32_t flags, int *fd);

/* Closes the connection; tierd forgets its regions. Pools stay mapped where mapped. */
void tierd_close(tierd_client *);

/* --- Additions --- */

/* A hint for blocks [first, first+n) in one ring entry (the cheapest call). */
int tierd_hint_range(tierd_client *, uint32_t region, int kind, uint64_t first, uint32_t n,
                     uint32_t deadline_ms);

int tierd_unregister(tierd_client *, uint32_t region);

/* Generation of the region's placement table, or -errno. */
int64_t tierd_placement_generation(tierd_client *, uint32_t region);

/* Copies the region's counters. */
int tierd_stats(tierd_client *, uint32_t region, tierd_region_stats *out);

/* Pinned memory, (a) placement at allocation: *node gets the node a new allocation of
 * len bytes on `tier` (TIERD_TIER_FAST, 1.., TIERD_TIER_SLOWEST) should be bound to; if
 * that tier is full, the next slower one with room. Bind it (tierd_bind_node) before
 * pinning it (cudaHostRegister & co), since pinned pages cannot be migrated later. */
int tierd_advise_node(tierd_client *, size_t len, int tier, int *node);

/* mbind(MPOL_BIND, MPOL_MF_MOVE) of [addr, addr+len) of this process to `node`. */
int tierd_bind_node(void *addr, size_t len, int node);

/* Pinned memory, (b) cooperative relocation: blocks tierd wanted to move but the kernel
 * would not (pinned). Fills up to max (block, node) pairs; returns how many. The engine
 * copies each block into memory on that node, re-points its block table, and calls
 * tierd_relocated: tierd then treats the old blocks as free. */
int tierd_relocations(tierd_client *, uint32_t region, uint64_t *blocks, int32_t *nodes,
                      size_t max);
int tierd_relocated(tierd_client *, uint32_t region, const uint64_t *blocks, size_t n);

/* Pinned regions (docs/protocol.md, "Pinned regions"): memory move_pages cannot move
 * (cudaHostRegister, cudaHostAlloc, io_uring fixed buffers), laid out up front as
 * nnodes runs of slots[i] blocks on nodes[i], in address order. tierd never moves its
 * pages; it plans them from hints and asks, through tierd_relocations, for blocks'
 * contents on another node, in both directions. The engine copies the block into a
 * free block on that node (or re-points to a copy still valid there: a shadow),
 * re-points its block table and calls tierd_moved(from, to); or tierd_declined. The
 * source keeps a valid copy (a shadow) until the engine writes it (TIERD_HINT_WRITTEN)
 * or frees it (TIERD_HINT_FREE). 0 or -errno (-EINVAL: layout does not add up). */
int tierd_register_pinned(tierd_client *, void *base, size_t len, size_t block_size,
                          const int32_t *nodes, const uint32_t *slots, size_t nnodes,
                          uint32_t *region);
int tierd_moved(tierd_client *, uint32_t region, uint64_t from, uint64_t to, uint32_t n);
int tierd_declined(tierd_client *, uint32_t region, const uint64_t *blocks, size_t n);

/* Drops the memory behind `blocks` of `region`: their contents are dead and about to be
 * rewritten (blocks taken from the engine's free list for new KV). The new contents are
 * then allocated on the CPU's local node, the fast tier, where tierd keeps headroom:
 * a page fault per page instead of a migration. The blocks read as zeros afterwards.
 * Never on memory pinned for device DMA (cudaHostAlloc / cudaHostRegister): the device
 * would keep the old pages; pinned pools use tierd_relocations. 0 or -errno. */
int tierd_recycle(tierd_client *, uint32_t region, const uint64_t *blocks, size_t n);

/* Reconnection. When tierd goes away (restart, crash) the library notices on its
 * socket, marks every region not live (tierd_stats: TIERD_REGION_CLOSED; hints accept
 * 0 blocks) and reconnects in the background with backoff (50 ms doubling to 5 s),
 * registering the same memory again under the region ids the caller already holds and
 * re-pinning PIN_FAST blocks. Other calls fail while it is down. 1 connected, 0 not,
 * or -errno. */
int tierd_is_connected(tierd_client *);
/* Successful reconnections so far, or -errno. */
int64_t tierd_reconnects(tierd_client *);

#ifdef __cplusplus
}
#endif

#endif /* TIERD_H */
