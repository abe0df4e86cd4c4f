/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * BPF-only: benchmark harness support. Programs built on it are never attached; userspace
 * disables their autoload outside `ebpfsentinel bench` and sizes bench_addrs only there.
 */
#ifndef EBPFSENTINEL_BENCH_BPF_H
#define EBPFSENTINEL_BENCH_BPF_H

#include "common.bpf.h"

struct bench_addr {
	__u8 src[16];
	__u8 dst[16];
};

/* index -> addresses written into the next packet; resized before load by the benchmark */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_addr);
} bench_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_cursor SEC(".maps");

/* Overwrites the addresses of an untagged IPv4/IPv6 packet; non-zero if it is neither. */
static __always_inline int bench_spread_addresses(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct bench_addr *a;
	__u32 zero = 0, *cur;

	cur = bpf_map_lookup_elem(&bench_cursor, &zero);
	if (!cur)
		return -1;
	a = bpf_map_lookup_elem(&bench_addrs, cur);
	if (!a) {
		*cur = 0;
		a = bpf_map_lookup_elem(&bench_addrs, &zero);
		if (!a)
			return -1;
	}
	*cur += 1;
	if ((void *)(eth + 1) > data_end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return -1;
		__builtin_memcpy(&ip->saddr, a->src, 4);
		__builtin_memcpy(&ip->daddr, a->dst, 4);
		return 0;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		__builtin_memcpy(&ip6->saddr, a->src, 16);
		__builtin_memcpy(&ip6->daddr, a->dst, 16);
		return 0;
	}
	return -1;
}

#endif
