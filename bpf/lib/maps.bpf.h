/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * BPF-only: maps that several programs share. Userspace pins each one by its name under the
 * pin root and hands the same map to every object that declares it.
 */
#ifndef EBPFSENTINEL_MAPS_BPF_H
#define EBPFSENTINEL_MAPS_BPF_H

#include "common.bpf.h"
#include "parse.bpf.h"

/* every program -> userspace: struct packet_event records */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_RING_BYTES);
} events SEC(".maps");

/* enum xdp_stage -> program; filled by userspace with the enabled XDP stages */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, XDP_STAGE_COUNT);
	__type(key, __u32);
	__type(value, __u32);
} xdp_chain SEC(".maps");

/*
 * The packet as the first XDP stage parsed it, handed to the stages it tail-calls: one parse
 * per hook. Tail calls stay on the CPU, so a per-CPU slot cannot be overwritten in between.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pkt);
} xdp_scratch SEC(".maps");

#endif
