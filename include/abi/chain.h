/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Included by BPF programs and (through BTF) by userspace: tail-call slots of the XDP and TC
 * chains. */
#ifndef EBPFSENTINEL_ABI_CHAIN_H
#define EBPFSENTINEL_ABI_CHAIN_H

/*
 * Slot of each stage in the xdp_chain PROG_ARRAY. A stage that passes a packet tail-calls the
 * next filled slot after its own; an empty slot is a disabled stage.
 */
enum xdp_stage {
	XDP_STAGE_FIREWALL = 0,
	XDP_STAGE_RATELIMIT = 1,
	XDP_STAGE_LB = 2,
	XDP_STAGE_COUNT = 3,
};

/*
 * Slots of the tc_chain_ingress and tc_chain_egress PROG_ARRAYs, in the order of the packet
 * path. The entry program of each direction tail-calls the first filled slot; a stage that
 * passes a packet tail-calls the next filled slot after its own, and the last one returns
 * TC_ACT_UNSPEC (TCX_NEXT) so that other TC programs on the hook still run.
 */
enum tc_stage {
	TC_STAGE_CONNTRACK = 0,
	TC_STAGE_IDS = 1,
	TC_STAGE_THREATINTEL = 2,
	TC_STAGE_DNS = 3,
	TC_STAGE_SCRUB = 4,
	TC_STAGE_COUNT = 5,
};

#endif
