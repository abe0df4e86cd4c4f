/* SPDX-License-Identifier: GPL-2.0-only */
/* BPF-only: filling and submitting struct packet_event on the shared ring. */
#ifndef EBPFSENTINEL_EVENTS_BPF_H
#define EBPFSENTINEL_EVENTS_BPF_H

#include "maps.bpf.h"
#include "parse.bpf.h"

/*
 * Reserves `size` bytes on the shared ring, or NULL when the event must be skipped: the ring
 * is over 3/4 full (a consumer that lags must not make every producer fail its reservations)
 * or the reservation failed. `pending` is for events_submit.
 */
static __always_inline void *events_reserve(__u64 size, __u64 *pending)
{
	*pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (*pending > EVENTS_RING_BYTES / 4 * 3)
		return NULL;
	return bpf_ringbuf_reserve(&events, size, 0);
}

/*
 * One wakeup when the pending data crosses the threshold, not one per record above it: the
 * consumer drains on its own timer meanwhile.
 */
static __always_inline void events_submit(void *rec, __u64 pending, __u64 size)
{
	bpf_ringbuf_submit(rec, pending < EVENTS_WAKEUP_BYTES &&
						pending + size + 8 >= EVENTS_WAKEUP_BYTES ?
					BPF_RB_FORCE_WAKEUP :
					BPF_RB_NO_WAKEUP);
}

static __always_inline void fill_packet_event(struct packet_event *ev, __u32 ifindex,
					      const struct pkt *p, __u8 kind, __u8 action,
					      __u16 rule_id)
{
	__u32 cpu;

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
}

/* Returns false when the event was skipped (see events_reserve). */
static __always_inline bool emit_packet_event(__u32 ifindex, const struct pkt *p, __u8 kind,
					      __u8 action, __u16 rule_id)
{
	struct packet_event *ev;
	__u64 pending;

	ev = events_reserve(sizeof(*ev), &pending);
	if (!ev)
		return false;
	fill_packet_event(ev, ifindex, p, kind, action, rule_id);
	events_submit(ev, pending, sizeof(*ev));
	return true;
}

#endif
