// SPDX-License-Identifier: GPL-2.0-only
/*
 * The TC pipeline's entry programs (one per direction) and tc_conntrack, its first stage: the
 * connection table both TC hooks keep and xdp_firewall reads. Seeing both directions of every
 * flow is what lets a host tell the replies to its own connections from unsolicited packets.
 */
#include "lib/common.bpf.h"
#include "lib/parse.bpf.h"
#include "lib/conntrack.bpf.h"
#include "lib/tc_chain.bpf.h"
#include "lib/tcpopt.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* BTF for userspace: types only maps of other objects or userspace use */
struct ct_entry _ct_entry_btf;
struct ct_settings _ct_settings_btf;
struct ct_key _ct_key_btf;
enum ct_state _ct_state_btf;
enum ct_class _ct_class_btf;
enum ct_dir _ct_dir_btf;
enum ct_entry_flags _ct_entry_flags_btf;
enum ct_stat _ct_stat_btf;
enum ct_limits _ct_limits_btf;
enum tc_stage _tc_stage_btf;

/* the window scale a SYN announces, CT_NO_WSCALE without the option */
static __always_inline __u8 ct_syn_wscale(struct __sk_buff *skb, const struct pkt *p)
{
	struct tcp_opt_scan scan = {};
	__u64 at;
	__u8 scale;

	if (tcp_opt_find(skb, p->l4_off, &scan, TCPOPT_WSCALE, TCPOLEN_WSCALE) < 0)
		return CT_NO_WSCALE;
	at = scan.found + 2;
	VERIFIER_MASK(at, 63);
	scale = scan.opts[at];
	return scale > TCP_MAX_WSCALE ? TCP_MAX_WSCALE : scale;
}

static __always_inline void ct_side_open(struct ct_side *s, const struct ct_view *v, __u32 win)
{
	s->td_end = v->end;
	s->td_maxwin = win ? win : 1;
	s->td_maxend = v->end + s->td_maxwin;
}

static __always_inline void ct_side_count(struct ct_side *s, __u32 len)
{
	__sync_fetch_and_add(&s->packets, 1);
	__sync_fetch_and_add(&s->bytes, len);
}

/* A first packet opens an entry; the packet's source is the originator. */
static __always_inline void ct_create(struct __sk_buff *skb, const struct pkt *p,
				      const struct ct_view *v, __u64 now, __u64 flags)
{
	struct ct_entry e = {};

	e.first_seen_ns = now;
	e.last_seen_ns = now;
	e.flags = v->src_hi ? CT_F_ORIGIN_HI : 0;
	e.ifindex = skb->ifindex;
	e.socket_cookie = bpf_get_socket_cookie(skb);
	e.side[CT_DIR_ORIGINAL].packets = 1;
	e.side[CT_DIR_ORIGINAL].bytes = p->len;
	e.side[CT_DIR_ORIGINAL].wscale = CT_NO_WSCALE;
	e.side[CT_DIR_REPLY].wscale = CT_NO_WSCALE;
	if (v->key.proto == IPPROTO_TCP) {
		e.state = CT_TCP_SYN_SENT;
		e.side[CT_DIR_ORIGINAL].wscale = ct_syn_wscale(skb, p);
		ct_side_open(&e.side[CT_DIR_ORIGINAL], v, v->win);
	} else if (v->key.proto == IPPROTO_UDP) {
		e.state = CT_UDP_NEW;
	} else {
		e.state = CT_ICMP_NEW;
	}
	if (bpf_map_update_elem(&ct_table, &v->key, &e, flags) == 0) {
		ct_count(CT_STAT_NEW);
		if (flags == BPF_EXIST)
			ct_count(CT_STAT_REUSED);
	}
}

/* TCP state and window of a packet ct_class_tcp accepted */
static __always_inline void ct_tcp_advance(struct __sk_buff *skb, const struct pkt *p,
					   struct ct_entry *e, __u32 dir, const struct ct_view *v)
{
	struct ct_side *sender = &e->side[dir & 1];
	struct ct_side *receiver = &e->side[!(dir & 1)];
	__u8 f = v->tcp_flags, state = e->state, next = state;
	__u32 win;

	if ((f & TCP_SYN) && !sender->td_maxwin) {
		sender->wscale = ct_syn_wscale(skb, p);
		if (sender->wscale != CT_NO_WSCALE && receiver->wscale != CT_NO_WSCALE)
			e->flags |= CT_F_WSCALE;
	}
	win = ct_window(e, dir, v);
	if (!sender->td_maxwin) {
		ct_side_open(sender, v, win);
	} else {
		if (seq_after(v->end, sender->td_end))
			sender->td_end = v->end;
		if (win > sender->td_maxwin)
			sender->td_maxwin = win;
	}
	if ((f & TCP_ACK) && seq_after(v->ack + win, receiver->td_maxend))
		receiver->td_maxend = v->ack + win;

	if (f & TCP_RST) {
		next = CT_TCP_CLOSED;
	} else if (state == CT_TCP_SYN_SENT) {
		if (dir == CT_DIR_REPLY && (f & TCP_SYN)) {
			next = CT_TCP_SYN_RECV;
			if (!(f & TCP_ACK))
				e->flags |= CT_F_SIMULTANEOUS_OPEN;
		}
	} else if (state == CT_TCP_SYN_RECV) {
		if (f & TCP_FIN)
			next = dir == CT_DIR_ORIGINAL ? CT_TCP_FIN_WAIT : CT_TCP_CLOSE_WAIT;
		else if ((f & TCP_ACK) && !(f & TCP_SYN))
			next = CT_TCP_ESTABLISHED;
	} else if (state == CT_TCP_ESTABLISHED) {
		if (f & TCP_FIN)
			next = dir == CT_DIR_ORIGINAL ? CT_TCP_FIN_WAIT : CT_TCP_CLOSE_WAIT;
	} else if (state == CT_TCP_FIN_WAIT) {
		if ((f & TCP_FIN) && dir == CT_DIR_REPLY)
			next = CT_TCP_TIME_WAIT;
	} else if (state == CT_TCP_CLOSE_WAIT) {
		if ((f & TCP_FIN) && dir == CT_DIR_ORIGINAL)
			next = CT_TCP_TIME_WAIT;
	}
	if (next == state)
		return;
	e->state = next;
	if (state == CT_TCP_SYN_RECV)
		ct_count(CT_STAT_ESTABLISHED);
	if (next == CT_TCP_TIME_WAIT || (next == CT_TCP_CLOSED && state != CT_TCP_TIME_WAIT))
		ct_count(CT_STAT_CLOSED);
}

/* Classifies the packet and moves its flow's entry on; returns enum ct_class. */
static __always_inline __u32 ct_track(struct __sk_buff *skb, const struct pkt *p,
				      const struct ct_settings *cs)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u64 now = ct_now();
	struct ct_view v = {};
	struct ct_entry *e;
	__u32 cls, dir;

	if (!ct_view_fill(data, data_end, p, &v)) {
		cls = ct_class_untracked(&v, cs, now, true);
		if (cls == CT_CLASS_RELATED)
			ct_count(CT_STAT_RELATED);
		else if (cls == CT_CLASS_INVALID)
			ct_count(CT_STAT_INVALID);
		return cls;
	}
	e = ct_lookup(&v.key, cs, now, true);
	cls = ct_class_of(e, &v);
	if (cls == CT_CLASS_INVALID) {
		ct_count(CT_STAT_INVALID);
		return cls;
	}
	if (!e) {
		ct_create(skb, p, &v, now, BPF_NOEXIST);
		return cls;
	}
	if (v.key.proto == IPPROTO_TCP && cls == CT_CLASS_NEW &&
	    (e->state == CT_TCP_TIME_WAIT || e->state == CT_TCP_CLOSED)) {
		/* the ports are reused: a fresh entry, originated by this SYN's sender */
		ct_create(skb, p, &v, now, BPF_EXIST);
		return cls;
	}
	dir = ct_packet_dir(e, &v);
	if (v.key.proto == IPPROTO_TCP) {
		ct_tcp_advance(skb, p, e, dir, &v);
	} else if (dir == CT_DIR_REPLY) {
		if (e->state == CT_UDP_NEW) {
			e->state = CT_UDP_ESTABLISHED;
			ct_count(CT_STAT_ESTABLISHED);
		} else if (e->state == CT_ICMP_NEW) {
			e->state = CT_ICMP_ESTABLISHED;
			ct_count(CT_STAT_ESTABLISHED);
		}
	}
	if (dir == CT_DIR_REPLY && !(e->flags & CT_F_SEEN_REPLY))
		e->flags |= CT_F_SEEN_REPLY;
	if (!e->socket_cookie)
		e->socket_cookie = bpf_get_socket_cookie(skb);
	ct_side_count(&e->side[dir & 1], p->len);
	e->last_seen_ns = now;
	return cls;
}

static __always_inline int tc_conntrack_stage(struct __sk_buff *skb)
{
	const struct ct_settings *cs = ct_settings_get();
	struct tc_handover *h = tc_handover_get();
	bool ingress;

	if (!h)
		return TC_ACT_UNSPEC;
	ingress = h->ingress;
	if (cs && cs->enabled && h->p.parse_result == PARSE_OK) {
		h->p.ct_class = ct_track(skb, &h->p, cs);
		if (h->p.ct_class == CT_CLASS_INVALID && cs->drop_invalid) {
			ct_count(CT_STAT_DROP_INVALID);
			return TC_ACT_SHOT;
		}
	}
	return tc_chain_next(skb, ingress, TC_STAGE_CONNTRACK);
}

SEC("tc")
int tc_conntrack(struct __sk_buff *skb)
{
	return tc_conntrack_stage(skb);
}

SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	return tc_entry(skb, true);
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	return tc_entry(skb, false);
}
