/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * BPF-only: the IPS blacklist xdp_firewall checks before anything else. The IPS engine and
 * `ebpfsentinel block` write it; an entry past its expiry no longer blocks (the daemon removes
 * it).
 */
#ifndef EBPFSENTINEL_IPS_BPF_H
#define EBPFSENTINEL_IPS_BPF_H

#include "common.bpf.h"
#include "parse.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, IPS_MAX_BLOCKED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ti_v4_key);
	__type(value, struct ips_block);
} ips_block_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, IPS_MAX_BLOCKED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ti_v6_key);
	__type(value, struct ips_block);
} ips_block_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, IPS_MAX_BLOCKED_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ti_lpm_v4_key);
	__type(value, struct ips_block);
} ips_block_lpm_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, IPS_MAX_BLOCKED_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ti_lpm_v6_key);
	__type(value, struct ips_block);
} ips_block_lpm_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ips_settings);
} ips_settings SEC(".maps");

static __always_inline bool ips_live(const struct ips_block *b, __u64 now)
{
	return b && (!b->expires_ns || now < b->expires_ns);
}

/* Whether the packet's source is blocked. */
static __always_inline bool ips_blocked(const struct pkt *p)
{
	const struct ips_settings *s;
	__u32 zero = 0, flags;
	__u64 now;

	s = bpf_map_lookup_elem(&ips_settings, &zero);
	if (!s || !s->flags)
		return false;
	flags = s->flags;
	now = bpf_ktime_get_coarse_ns();
	if (p->family == FW_FAMILY_V4) {
		if (flags & IPS_SET_EXACT_V4) {
			struct ti_v4_key k;

			__builtin_memcpy(k.addr, p->saddr, 4);
			if (ips_live(bpf_map_lookup_elem(&ips_block_v4, &k), now))
				return true;
		}
		if (flags & IPS_SET_CIDRS_V4) {
			struct ti_lpm_v4_key l = { .prefixlen = 32 };

			__builtin_memcpy(l.addr, p->saddr, 4);
			return ips_live(bpf_map_lookup_elem(&ips_block_lpm_v4, &l), now);
		}
		return false;
	}
	if (flags & IPS_SET_EXACT_V6) {
		struct ti_v6_key k6;

		__builtin_memcpy(k6.addr, p->saddr, 16);
		if (ips_live(bpf_map_lookup_elem(&ips_block_v6, &k6), now))
			return true;
	}
	if (flags & IPS_SET_CIDRS_V6) {
		struct ti_lpm_v6_key l6 = { .prefixlen = 128 };

		__builtin_memcpy(l6.addr, p->saddr, 16);
		return ips_live(bpf_map_lookup_elem(&ips_block_lpm_v6, &l6), now);
	}
	return false;
}

#endif
