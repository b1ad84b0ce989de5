// SPDX-License-Identifier: GPL-2.0
/*
 * hwsample.bpf.c: counts hardware load/store samples per (process, granule).
 *
 * Attached (one perf event per CPU) to precise memory-access sampling: Intel
 * PEBS mem-loads or AMD IBS op, opened by the daemon with PERF_SAMPLE_ADDR so
 * the sample carries the data address in ctx->addr. Only samples of tgids in
 * `tracked` are counted, into an LRU hash keyed by (tgid, addr >>
 * granule_shift). Drained by daemon/src/sampling/hw.rs every
 * sampling.drain_interval_ms. Machines without such a PMU never load this.
 */
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>
#include "tierd_bpf.h"
#include "stats.bpf.h"

/* Set by the daemon before load (EbpfLoader::set_global). */
const volatile __u32 granule_shift = 16;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TIERD_MAX_TRACKED);
	__type(key, __u32);
	__type(value, __u8);
} tracked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TIERD_PAGE_MAX_ENTRIES);
	__type(key, struct tierd_page_key);
	__type(value, __u64);
} hw_pages SEC(".maps");

SEC("perf_event")
int tierd_hw_sample(struct bpf_perf_event_data *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tierd_page_key key = {};
	__u64 one = 1, *count;
	__u64 addr = ctx->addr;

	if (!addr || !bpf_map_lookup_elem(&tracked, &tgid))
		return 0;
	stat_inc(TIERD_STAT_EVENTS);
	key.tgid = tgid;
	key.granule = addr >> (granule_shift & 63);
	count = bpf_map_lookup_elem(&hw_pages, &key);
	if (count) {
		__sync_fetch_and_add(count, 1);
		stat_inc(TIERD_STAT_UPDATES);
		return 0;
	}
	if (bpf_map_update_elem(&hw_pages, &key, &one, BPF_NOEXIST))
		stat_inc(TIERD_STAT_DROPPED);
	else
		stat_inc(TIERD_STAT_UPDATES);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
