// SPDX-License-Identifier: GPL-2.0-only
/*
 * The benchmark floor: what BPF_PROG_TEST_RUN costs for a program that does nothing, measured
 * in the same run as every stage so that stage costs are reported as ratios to it.
 */
#include "lib/common.bpf.h"
#include "lib/bench.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* the floor of the spread-key harness: the same address rewrite, then XDP_PASS */
SEC("xdp")
int xdp_floor_spread(struct xdp_md *ctx)
{
	if (bench_spread_addresses(ctx))
		return XDP_ABORTED;
	return XDP_PASS;
}
