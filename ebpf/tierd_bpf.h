/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The one definition of every struct and constant shared between tierd's BPF
 * programs (ebpf/NAME.bpf.c) and the daemon (daemon/src/sampling/abi.rs mirrors
 * these with #[repr(C)] and asserts sizes and offsets at compile time).
 *
 * Change a struct here and in abi.rs together; the Rust assertions catch a
 * mismatch in size or offset at build time.
 */
#ifndef TIERD_BPF_H
#define TIERD_BPF_H

#ifdef __BPF__
#include <linux/types.h>
#else
#include <stdint.h>
typedef uint32_t __u32;
typedef uint64_t __u64;
#endif

/* Capacity of the DAMON region map: regions x targets x aggregations per drain. */
#define TIERD_DAMON_MAX_ENTRIES 16384
/* Capacity of the fault / hw-sample granule maps (LRU: oldest entries go first). */
#define TIERD_PAGE_MAX_ENTRIES 65536
/* Processes (tgids) the fault / hw-sample programs count for. */
#define TIERD_MAX_TRACKED 4096
/* kdamond kthreads whose damon_aggregated events are ours. */
#define TIERD_MAX_KDAMONDS 8

/* Indices of the per-CPU `stats` array of every program. */
#define TIERD_STAT_EVENTS 0  /* events seen (after the pid filter) */
#define TIERD_STAT_DROPPED 1 /* map updates that failed (map full) */
#define TIERD_STAT_UPDATES 2 /* map entries created or added to: the daemon skips
				 iterating a map (O(max_entries)) when unchanged */
#define TIERD_STAT_NR 3

/* A DAMON region as reported by one kdamond for one of its targets. */
struct tierd_damon_key {
	__u32 kdamond_pid; /* kthread pid of the kdamond that reported it */
	__u32 target_id;   /* index of the target in the kdamond's context */
	__u64 start;       /* region [start, end), virtual addresses */
	__u64 end;
};

/* Sum over the aggregations seen since the last drain. */
struct tierd_damon_val {
	__u64 nr_accesses; /* sum of nr_accesses (checks that found it accessed) */
	__u32 aggregations; /* how many aggregation intervals were summed */
	__u32 nr_regions;  /* the target's region count at the last aggregation */
};

/* One granule (address >> granule_shift) of one process. */
struct tierd_page_key {
	__u32 tgid;
	__u32 pad;
	__u64 granule;
};

#endif /* TIERD_BPF_H */
