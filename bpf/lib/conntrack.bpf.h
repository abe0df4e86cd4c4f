/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * BPF-only: the connection table that tc_conntrack writes on both TC hooks and xdp_firewall
 * reads, and the one classification both use. Userspace pins ct_table, ct_settings and
 * ct_stats under the pin root and hands them to every object that declares them.
 */
#ifndef EBPFSENTINEL_CONNTRACK_BPF_H
#define EBPFSENTINEL_CONNTRACK_BPF_H

#include "common.bpf.h"
#include "parse.bpf.h"

/* sized from conntrack.table_size before load */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_DEFAULT_TABLE_SIZE);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
} ct_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_settings);
} ct_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CT_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} ct_stats SEC(".maps");

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

#define TCP_MAX_WSCALE 14
/* ct_side.wscale before the SYN showed one: no scaling */
#define CT_NO_WSCALE 0xff

#define ICMP_ECHOREPLY      0
#define ICMP_ECHO           8
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY   129

/* What the tracker reads from a packet beyond struct pkt. */
struct ct_view {
	struct ct_key key;
	/* TCP */
	__u32 seq;
	__u32 ack;
	/* seq + payload + SYN + FIN */
	__u32 end;
	__u16 win;
	__u8 tcp_flags;
	/* the packet's source is the key's higher endpoint */
	__u8 src_hi;
	/* ICMP: echo request or reply (keyed by identifier), error (quotes a flow), other */
	__u8 icmp_kind;
	__u8 tracked; /* the packet has a flow key */
	__u8 pad[2];
};

enum ct_icmp_kind {
	CT_ICMP_NONE = 0,
	CT_ICMP_REQUEST,
	CT_ICMP_REPLY,
	CT_ICMP_ERROR,
	CT_ICMP_OTHER,
};

static __always_inline void ct_count(__u32 stat)
{
	__u64 *c = bpf_map_lookup_elem(&ct_stats, &stat);

	if (c)
		*c += 1;
}

/*
 * The table's clock: CLOCK_MONOTONIC at tick resolution, plenty for timeouts of seconds and
 * a fraction of bpf_ktime_get_ns()'s cost where the clocksource is slow to read (VMs).
 */
static __always_inline __u64 ct_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

static __always_inline const struct ct_settings *ct_settings_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ct_settings, &zero);
}

/* big-endian word w of an address */
static __always_inline __u32 ct_word(const __u8 *addr, int w)
{
	__u32 v;

	__builtin_memcpy(&v, addr + 4 * w, 4);
	return bpf_ntohl(v);
}

/* -1, 0, 1 as (a, pa) sorts before, with or after (b, pb) */
static __always_inline int ct_endpoint_cmp(const __u8 *a, __u16 pa, const __u8 *b, __u16 pb)
{
	int w;

#pragma unroll
	for (w = 0; w < 4; w++) {
		__u32 x = ct_word(a, w), y = ct_word(b, w);

		if (x != y)
			return x < y ? -1 : 1;
	}
	if (pa != pb)
		return pa < pb ? -1 : 1;
	return 0;
}

/* Fills view->key from one direction of a flow; addresses are 16 bytes, IPv4 zero-padded. */
static __always_inline void ct_key_fill(struct ct_view *v, __u8 family, __u8 proto,
					const __u8 *saddr, const __u8 *daddr, __u16 sport,
					__u16 dport)
{
	struct ct_key *k = &v->key;

	k->family = family;
	k->proto = proto;
	if (ct_endpoint_cmp(saddr, sport, daddr, dport) <= 0) {
		__builtin_memcpy(k->addr_lo, saddr, 16);
		__builtin_memcpy(k->addr_hi, daddr, 16);
		k->port_lo = sport;
		k->port_hi = dport;
		v->src_hi = 0;
	} else {
		__builtin_memcpy(k->addr_lo, daddr, 16);
		__builtin_memcpy(k->addr_hi, saddr, 16);
		k->port_lo = dport;
		k->port_hi = sport;
		v->src_hi = 1;
	}
}

static __always_inline bool ct_icmp_is_error(__u8 family, __u8 type)
{
	if (family == FW_FAMILY_V4)
		/* unreachable, source quench, redirect, time exceeded, parameter problem */
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	/* unreachable, packet too big, time exceeded, parameter problem */
	return type >= 1 && type <= 4;
}

/*
 * The flow an ICMP error quotes: the inner IP header and the first 8 bytes of its transport
 * header (all RFC 792 guarantees). IPv6 extension headers in the quote are not walked.
 */
static __always_inline bool ct_view_inner(void *data, void *data_end, const struct pkt *p,
					  struct ct_view *v)
{
	__u8 saddr[16] = {}, daddr[16] = {};
	__u16 sport = 0, dport = 0;
	__u64 off = p->l4_off + 8;
	__u8 proto, *l4;

	if (off > 0x1ff)
		return false;
	VERIFIER_MASK(off, 0x1ff);
	if (p->family == FW_FAMILY_V4) {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
			return false;
		__builtin_memcpy(saddr, &ip->saddr, 4);
		__builtin_memcpy(daddr, &ip->daddr, 4);
		proto = ip->protocol;
		l4 = (void *)ip + ip->ihl * 4;
	} else {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return false;
		__builtin_memcpy(saddr, &ip6->saddr, 16);
		__builtin_memcpy(daddr, &ip6->daddr, 16);
		proto = ip6->nexthdr;
		l4 = (void *)(ip6 + 1);
	}
	if ((void *)(l4 + 8) > data_end)
		return false;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		sport = (__u16)l4[0] << 8 | l4[1];
		dport = (__u16)l4[2] << 8 | l4[3];
	} else if ((proto == IPPROTO_ICMP && p->family == FW_FAMILY_V4 &&
		    (l4[0] == ICMP_ECHO || l4[0] == ICMP_ECHOREPLY)) ||
		   (proto == NH_ICMPV6 && p->family == FW_FAMILY_V6 &&
		    (l4[0] == ICMPV6_ECHO_REQUEST || l4[0] == ICMPV6_ECHO_REPLY))) {
		sport = dport = (__u16)l4[4] << 8 | l4[5];
	} else {
		return false;
	}
	ct_key_fill(v, p->family, proto, saddr, daddr, sport, dport);
	return true;
}

/*
 * Reads what tracking needs from a parsed packet. False when the packet has no flow of its
 * own: non-first fragments, protocols other than TCP, UDP and ICMP, ICMP errors (their quoted
 * flow is in v->key when icmp_kind is CT_ICMP_ERROR and the quote was readable).
 */
static __always_inline bool ct_view_fill(void *data, void *data_end, const struct pkt *p,
					 struct ct_view *v)
{
	__u64 l4_off = p->l4_off;

	/* offsets are masked for the verifier; headers that deep are not tracked */
	if (!(p->flags & PKT_F_L4) || l4_off > 0x1ff)
		return false;
	VERIFIER_MASK(l4_off, 0x1ff);
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4_off;
		__u32 payload;

		if ((void *)(th + 1) > data_end)
			return false;
		v->seq = bpf_ntohl(th->seq);
		v->ack = bpf_ntohl(th->ack_seq);
		v->win = bpf_ntohs(th->window);
		v->tcp_flags = ((__u8 *)th)[13];
		payload = p->l4_len - th->doff * 4;
		v->end = v->seq + payload + !!(v->tcp_flags & TCP_SYN) + !!(v->tcp_flags & TCP_FIN);
		ct_key_fill(v, p->family, p->proto, p->saddr, p->daddr, p->sport, p->dport);
		v->tracked = 1;
		return true;
	}
	if (p->proto == IPPROTO_UDP) {
		ct_key_fill(v, p->family, p->proto, p->saddr, p->daddr, p->sport, p->dport);
		v->tracked = 1;
		return true;
	}
	/* ICMP: sport is the type (parse.bpf.h) */
	__u8 type = p->sport;
	bool request = (p->family == FW_FAMILY_V4 && type == ICMP_ECHO) ||
		       (p->family == FW_FAMILY_V6 && type == ICMPV6_ECHO_REQUEST);
	bool reply = (p->family == FW_FAMILY_V4 && type == ICMP_ECHOREPLY) ||
		     (p->family == FW_FAMILY_V6 && type == ICMPV6_ECHO_REPLY);

	if (request || reply) {
		__u8 *icmp = data + l4_off;
		__u16 id;

		if ((void *)(icmp + 8) > data_end)
			return false;
		id = (__u16)icmp[4] << 8 | icmp[5];
		v->icmp_kind = request ? CT_ICMP_REQUEST : CT_ICMP_REPLY;
		ct_key_fill(v, p->family, p->proto, p->saddr, p->daddr, id, id);
		v->tracked = 1;
		return true;
	}
	if (ct_icmp_is_error(p->family, type)) {
		v->icmp_kind = CT_ICMP_ERROR;
		v->tracked = ct_view_inner(data, data_end, p, v);
		return false;
	}
	v->icmp_kind = CT_ICMP_OTHER;
	return false;
}

/*
 * The entry of a key, or NULL when there is none or it idled past its state's timeout.
 * tc_conntrack removes an expired entry and counts (remove); xdp_firewall only reads, and
 * counts nothing but its fast path: two counter updates per packet would cost it more than
 * the lookup.
 */
static __always_inline struct ct_entry *
ct_lookup(const struct ct_key *k, const struct ct_settings *cs, __u64 now, bool remove)
{
	struct ct_entry *e;
	__u32 state;

	if (remove)
		ct_count(CT_STAT_LOOKUPS);
	e = bpf_map_lookup_elem(&ct_table, k);
	if (!e)
		return NULL;
	state = e->state;
	if (state >= CT_STATE_COUNT)
		return NULL;
	if ((__s64)(now - e->last_seen_ns) > (__s64)cs->timeout_ns[state]) {
		if (remove && bpf_map_delete_elem(&ct_table, k) == 0)
			ct_count(CT_STAT_EXPIRED);
		return NULL;
	}
	if (remove)
		ct_count(CT_STAT_HITS);
	return e;
}

/* enum ct_dir of the packet in the flow of e */
static __always_inline __u32 ct_packet_dir(const struct ct_entry *e, const struct ct_view *v)
{
	return (!!(e->flags & CT_F_ORIGIN_HI)) == v->src_hi ? CT_DIR_ORIGINAL : CT_DIR_REPLY;
}

static __always_inline bool seq_before_eq(__u32 a, __u32 b)
{
	return (__s32)(a - b) <= 0;
}

static __always_inline bool seq_after(__u32 a, __u32 b)
{
	return (__s32)(a - b) > 0;
}

/* the window a packet advertises, in bytes */
static __always_inline __u32 ct_window(const struct ct_entry *e, __u32 dir, const struct ct_view *v)
{
	__u32 win = v->win;
	__u8 scale = e->side[dir & 1].wscale;

	if (!(v->tcp_flags & TCP_SYN) && (e->flags & CT_F_WSCALE) && scale <= TCP_MAX_WSCALE)
		win <<= scale;
	return win;
}

/*
 * nf_conntrack's four window bounds (Rooij, "Real stateful TCP packet filtering in IP
 * Filter"): the data lies in the receiver's window and the ACK acknowledges data the receiver
 * sent and not too long ago. A side that has sent nothing yet is not checked.
 */
static __always_inline bool ct_tcp_in_window(const struct ct_entry *e, __u32 dir,
					     const struct ct_view *v)
{
	const struct ct_side *sender = &e->side[dir & 1];
	const struct ct_side *receiver = &e->side[!(dir & 1)];
	__u32 ack = v->ack, maxack;

	if (!sender->td_maxwin || !receiver->td_maxwin)
		return true;
	if (!(v->tcp_flags & TCP_ACK))
		ack = receiver->td_end;
	maxack = sender->td_maxwin > CT_MIN_ACK_WINDOW ? sender->td_maxwin : CT_MIN_ACK_WINDOW;
	return seq_before_eq(v->seq, sender->td_maxend) &&
	       !seq_after(sender->td_end - receiver->td_maxwin, v->end) &&
	       seq_before_eq(ack, receiver->td_end) &&
	       seq_after(ack, receiver->td_end - maxack - 1);
}

static __always_inline bool ct_tcp_pure_syn(__u8 flags)
{
	return (flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) == TCP_SYN;
}

/* enum ct_class of a TCP packet in a tracked flow */
static __always_inline __u32 ct_class_tcp(const struct ct_entry *e, __u32 dir,
					  const struct ct_view *v)
{
	__u8 f = v->tcp_flags;

	switch (e->state) {
	case CT_TCP_SYN_SENT:
		if (dir == CT_DIR_ORIGINAL)
			return ct_tcp_pure_syn(f) ? CT_CLASS_NEW : CT_CLASS_INVALID;
		/* SYN-ACK, simultaneous open, or the RST that refuses the SYN */
		if ((f & TCP_SYN) && !(f & (TCP_RST | TCP_FIN)))
			return CT_CLASS_ESTABLISHED;
		if ((f & TCP_RST) && (f & TCP_ACK) && v->ack == e->side[CT_DIR_ORIGINAL].td_end)
			return CT_CLASS_ESTABLISHED;
		return CT_CLASS_INVALID;
	case CT_TCP_TIME_WAIT:
	case CT_TCP_CLOSED:
		/* a new connection reusing the ports */
		if (ct_tcp_pure_syn(f))
			return CT_CLASS_NEW;
		if (e->state == CT_TCP_CLOSED)
			return CT_CLASS_INVALID;
		break;
	default:
		if ((f & TCP_SYN) && e->state != CT_TCP_SYN_RECV)
			return CT_CLASS_INVALID;
	}
	if (!ct_tcp_in_window(e, dir, v))
		return CT_CLASS_INVALID;
	if (dir == CT_DIR_REPLY || (e->flags & CT_F_SEEN_REPLY))
		return CT_CLASS_ESTABLISHED;
	return CT_CLASS_NEW;
}

/* enum ct_class of a packet with a flow of its own, given its entry (or NULL) */
static __always_inline __u32 ct_class_of(const struct ct_entry *e, const struct ct_view *v)
{
	__u32 dir;

	if (!e) {
		if (v->key.proto == IPPROTO_TCP)
			return ct_tcp_pure_syn(v->tcp_flags) ? CT_CLASS_NEW : CT_CLASS_INVALID;
		if (v->icmp_kind == CT_ICMP_REPLY)
			return CT_CLASS_INVALID;
		return CT_CLASS_NEW;
	}
	dir = ct_packet_dir(e, v);
	if (v->key.proto == IPPROTO_TCP)
		return ct_class_tcp(e, dir, v);
	if (v->icmp_kind == CT_ICMP_REQUEST && dir == CT_DIR_REPLY)
		return CT_CLASS_INVALID;
	if (v->icmp_kind == CT_ICMP_REPLY && dir == CT_DIR_ORIGINAL)
		return CT_CLASS_INVALID;
	if (dir == CT_DIR_REPLY || (e->flags & CT_F_SEEN_REPLY))
		return CT_CLASS_ESTABLISHED;
	return CT_CLASS_NEW;
}

/*
 * The class of a packet without a flow of its own: RELATED when it is an ICMP error quoting a
 * tracked flow, INVALID when it quotes none, NEW for other ICMP (neighbour discovery, router
 * advertisements) and untracked protocols.
 */
static __always_inline __u32 ct_class_untracked(const struct ct_view *v,
						const struct ct_settings *cs, __u64 now,
						bool remove)
{
	if (v->icmp_kind != CT_ICMP_ERROR)
		return CT_CLASS_NEW;
	if (v->tracked && ct_lookup(&v->key, cs, now, remove))
		return CT_CLASS_RELATED;
	return CT_CLASS_INVALID;
}

/* The class of a packet without changing the table: what xdp_firewall's rules match. */
static __always_inline __u32 ct_classify(void *data, void *data_end, const struct pkt *p,
					 const struct ct_settings *cs, __u64 now)
{
	struct ct_view v = {};

	if (!ct_view_fill(data, data_end, p, &v))
		return ct_class_untracked(&v, cs, now, false);
	return ct_class_of(ct_lookup(&v.key, cs, now, false), &v);
}

#endif
