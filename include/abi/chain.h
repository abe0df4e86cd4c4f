/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Included by BPF programs and (through BTF) by userspace: tail-call slots of the XDP chain. */
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

#endif
