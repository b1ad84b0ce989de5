// SPDX-License-Identifier: GPL-2.0
/*
 * fault.bpf.c: counts user page faults per (process, granule) in the kernel.
 *
 * Attached to the tracepoint exceptions:page_fault_user (x86). Only faults of
 * tgids in `tracked` (written by the daemon for each managed process) are
 * counted, into an LRU hash keyed by (tgid, address >> granule_shift), so an
 * overflow evicts the oldest granules instead of failing. The daemon drains
 * `fault_pages` every sampling.drain_interval_ms (daemon/src/sampling/fault.rs).
 *
 * The fault address is read at the offset the daemon takes from tracefs
 * (events/exceptions/page_fault_user/format); see
 * daemon/src/sampling/tracefs.rs for why not CO-RE.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "tierd_bpf.h"
#include "stats.bpf.h"

/* Set by the daemon before load (EbpfLoader::set_global). */
const volatile __u32 granule_shift = 16;

/* Offset of `address` (unsigned long) in the record; set before load. */
const volatile __u32 off_address = 8;

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
} fault_pages SEC(".maps");

SEC("tracepoint/exceptions/page_fault_user")
int tierd_page_fault_user(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tierd_page_key key = {};
	__u64 one = 1, *count, address = 0;

	if (!bpf_map_lookup_elem(&tracked, &tgid))
		return 0;
	stat_inc(TIERD_STAT_EVENTS);
	key.tgid = tgid;
	bpf_probe_read_kernel(&address, sizeof(address), ctx + off_address);
	key.granule = address >> (granule_shift & 63);
	count = bpf_map_lookup_elem(&fault_pages, &key);
	if (count) {
		__sync_fetch_and_add(count, 1);
		stat_inc(TIERD_STAT_UPDATES);
		return 0;
	}
	if (bpf_map_update_elem(&fault_pages, &key, &one, BPF_NOEXIST))
		stat_inc(TIERD_STAT_DROPPED);
	else
		stat_inc(TIERD_STAT_UPDATES);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
