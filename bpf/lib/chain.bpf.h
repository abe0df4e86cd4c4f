/* SPDX-License-Identifier: GPL-2.0-only */
/* BPF-only: handing a passed packet to the next enabled XDP stage. */
#ifndef EBPFSENTINEL_CHAIN_BPF_H
#define EBPFSENTINEL_CHAIN_BPF_H

#include "maps.bpf.h"

/*
 * A successful tail call does not return. An empty slot (disabled stage) falls through to
 * the next one; after the last slot the packet goes to the stack.
 */
static __always_inline int xdp_chain_next(struct xdp_md *ctx, __u32 self)
{
	_Static_assert(XDP_STAGE_COUNT == 3, "one tail call per slot after the firewall");
	/* no loop: clang cannot unroll one around a tail call */
	if (self < XDP_STAGE_RATELIMIT)
		bpf_tail_call(ctx, &xdp_chain, XDP_STAGE_RATELIMIT);
	if (self < XDP_STAGE_LB)
		bpf_tail_call(ctx, &xdp_chain, XDP_STAGE_LB);
	return XDP_PASS;
}

#endif
