/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The per-CPU `stats` array every tierd BPF program keeps (indices TIERD_STAT_* from
 * tierd_bpf.h) and its increment helper. BPF-side only: Rust reads the map through
 * daemon/src/sampling/bpf.rs (`stats`), which sums the CPUs.
 */
#ifndef TIERD_STATS_BPF_H
#define TIERD_STATS_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TIERD_STAT_NR);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

#endif
