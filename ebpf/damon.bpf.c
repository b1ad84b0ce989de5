// SPDX-License-Identifier: GPL-2.0
/*
 * damon.bpf.c: aggregates DAMON's per-region access counts in the kernel.
 *
 * Attached to the tracepoint damon:damon_aggregated, which every kdamond fires
 * once per region at the end of each aggregation interval. Events from
 * kdamonds tierd did not start (peers) are ignored: the daemon writes the
 * kthread pid of its own kdamond into `kdamonds`. Regions never found
 * accessed are skipped (they add no heat). The daemon drains `damon_regions`
 * every sampling.drain_interval_ms (daemon/src/sampling/damon/).
 *
 * Tracepoint fields are read at offsets the daemon takes from tracefs
 * (events/damon/damon_aggregated/format) and sets before load; see
 * daemon/src/sampling/tracefs.rs for why not CO-RE.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "tierd_bpf.h"
#include "stats.bpf.h"

/* Record offsets, set by the daemon before load (EbpfLoader::override_global). */
const volatile __u32 off_target_id = 8;   /* unsigned long */
const volatile __u32 off_nr_regions = 16; /* unsigned int */
const volatile __u32 off_start = 24;      /* unsigned long */
const volatile __u32 off_end = 32;        /* unsigned long */
const volatile __u32 off_nr_accesses = 40; /* unsigned int */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TIERD_MAX_KDAMONDS);
	__type(key, __u32);
	__type(value, __u8);
} kdamonds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TIERD_DAMON_MAX_ENTRIES);
	__type(key, struct tierd_damon_key);
	__type(value, struct tierd_damon_val);
} damon_regions SEC(".maps");

static __always_inline __u64 field_u64(void *ctx, __u32 off)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), ctx + off);
	return v;
}

static __always_inline __u32 field_u32(void *ctx, __u32 off)
{
	__u32 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), ctx + off);
	return v;
}

SEC("tracepoint/damon/damon_aggregated")
int tierd_damon_aggregated(void *ctx)
{
	__u32 kpid = (__u32)bpf_get_current_pid_tgid();
	struct tierd_damon_key key = {};
	struct tierd_damon_val *val;
	__u32 nr_accesses, nr_regions;

	if (!bpf_map_lookup_elem(&kdamonds, &kpid))
		return 0;
	stat_inc(TIERD_STAT_EVENTS);
	nr_accesses = field_u32(ctx, off_nr_accesses);
	if (!nr_accesses)
		return 0;
	key.kdamond_pid = kpid;
	key.target_id = (__u32)field_u64(ctx, off_target_id);
	key.start = field_u64(ctx, off_start);
	key.end = field_u64(ctx, off_end);
	nr_regions = field_u32(ctx, off_nr_regions);
	val = bpf_map_lookup_elem(&damon_regions, &key);
	if (val) {
		__sync_fetch_and_add(&val->nr_accesses, nr_accesses);
		__sync_fetch_and_add(&val->aggregations, 1);
		val->nr_regions = nr_regions;
		stat_inc(TIERD_STAT_UPDATES);
		return 0;
	}
	struct tierd_damon_val init = {
		.nr_accesses = nr_accesses,
		.aggregations = 1,
		.nr_regions = nr_regions,
	};
	if (bpf_map_update_elem(&damon_regions, &key, &init, BPF_NOEXIST))
		stat_inc(TIERD_STAT_DROPPED);
	else
		stat_inc(TIERD_STAT_UPDATES);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
