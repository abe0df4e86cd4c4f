/* SPDX-License-Identifier: GPL-2.0-only */
/* BPF-only: filling and submitting struct packet_event on the shared ring. */
#ifndef EBPFSENTINEL_EVENTS_BPF_H
#define EBPFSENTINEL_EVENTS_BPF_H

#include "maps.bpf.h"
#include "parse.bpf.h"

/*
 * Returns false when the event was skipped: the ring is over 3/4 full (a consumer that lags
 * must not make every producer fail its reservations) or the reservation failed.
 */
static __always_inline bool emit_packet_event(__u32 ifindex, const struct pkt *p, __u8 kind,
					      __u8 action, __u16 rule_id)
{
	struct packet_event *ev;
	__u64 pending;
	__u32 cpu;

	pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (pending > EVENTS_RING_BYTES / 4 * 3)
		return false;
	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev)
		return false;
	ev->timestamp_ns = bpf_ktime_get_boot_ns();
	if (p->family == FW_FAMILY_V6) {
		__builtin_memcpy(ev->src_addr, p->saddr, 16);
		__builtin_memcpy(ev->dst_addr, p->daddr, 16);
	} else {
		__builtin_memset(ev->src_addr, 0, 10);
		ev->src_addr[10] = 0xff;
		ev->src_addr[11] = 0xff;
		__builtin_memcpy(&ev->src_addr[12], p->saddr, 4);
		__builtin_memset(ev->dst_addr, 0, 10);
		ev->dst_addr[10] = 0xff;
		ev->dst_addr[11] = 0xff;
		__builtin_memcpy(&ev->dst_addr[12], p->daddr, 4);
	}
	ev->src_port = p->sport;
	ev->dst_port = p->dport;
	ev->ifindex = ifindex;
	ev->rule_id = rule_id;
	ev->vlan_id = p->vlan_id;
	ev->protocol = p->proto;
	ev->kind = kind;
	ev->action = action;
	cpu = bpf_get_smp_processor_id();
	ev->cpu = cpu > 255 ? 255 : cpu;
	/*
	 * One wakeup when the pending data crosses the threshold, not one per record above it:
	 * the consumer drains on its own timer meanwhile.
	 */
	bpf_ringbuf_submit(ev, pending < EVENTS_WAKEUP_BYTES &&
					       pending + sizeof(*ev) + 8 >= EVENTS_WAKEUP_BYTES ?
				       BPF_RB_FORCE_WAKEUP :
				       BPF_RB_NO_WAKEUP);
	return true;
}

#endif
