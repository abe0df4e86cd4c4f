// SPDX-License-Identifier: GPL-2.0-only
/*
 * tc_dns: DNS queries (UDP to port 53, and TCP to port 53 when the segment starts a message)
 * against a blocklist of domains. Every suffix of the first question's name is looked up in
 * dns_blocklist, so a listed domain blocks itself and all its subdomains; a match drops the
 * query or alerts, as its entry says, with an event that carries the name. Only the
 * rightmost DNS_MAX_LABELS labels are looked up; compression pointers are refused (a query's
 * first name has nothing to point back to).
 */
#include "lib/common.bpf.h"
#include "lib/parse.bpf.h"
#include "lib/events.bpf.h"
#include "lib/tc_chain.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define DNS_HDR_LEN   12
#define DNS_FLAG_QR   0x80
#define DNS_OPCODE(b) (((b) >> 3) & 0xf)
#define IPPROTO_TCP_  6
#define IPPROTO_UDP_  17
/* a wire name and the question's type and class */
#define DNS_QUESTION_MAX (DNS_MAX_NAME + 4)
#define DNS_BUF          512
#define FNV_OFFSET       0xcbf29ce484222325ULL
#define FNV_PRIME        0x100000001b3ULL

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DNS_MAX_BLOCKED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct dns_blocked);
} dns_blocklist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DNS_MAX_RUNTIME);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct dns_name);
} dns_runtime_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_settings);
} dns_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNS_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} dns_stats SEC(".maps");

/* the question as loaded and the hash of each of the last labels */
struct dns_scratch {
	__u8 buf[DNS_BUF];
	__u64 label_hash[DNS_MAX_LABELS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_scratch);
} dns_scratch SEC(".maps");

/* BTF for userspace */
enum dns_limits _dns_limits_btf;
enum dns_action _dns_action_btf;
enum dns_settings_flags _dns_settings_flags_btf;
enum dns_stat _dns_stat_btf;
struct dns_query_event _dns_query_event_btf;

static __always_inline void dns_count(__u32 stat)
{
	__u64 *c = bpf_map_lookup_elem(&dns_stats, &stat);

	if (c)
		*c += 1;
}

enum walk_state {
	WALK_LABELS = 0,
	WALK_DONE,
	WALK_MALFORMED,
	WALK_TRUNCATED,
};

struct dns_walk {
	/* a pointer to a map value survives the trip through ctx: no lookup per label */
	struct dns_scratch *s;
	__u32 pos; /* offset of the next length byte in buf */
	__u32 len; /* bytes loaded into buf */
	__u32 labels;
	__u32 state; /* enum walk_state */
};

static __always_inline __u64 dns_mix(__u64 k, __u64 label_hash)
{
	k = (k ^ label_hash) * FNV_PRIME;
	return k ^ (k >> 32);
}

/* One label per call: hashes it, stops at the root. */
static long dns_label(__u64 index, void *ctx)
{
	struct dns_walk *w = ctx;
	struct dns_scratch *s = w->s;
	__u32 pos = w->pos, len, j;
	__u64 h = FNV_OFFSET;

	if (!s || pos >= w->len || pos >= DNS_MAX_NAME) {
		w->state = WALK_TRUNCATED;
		return 1;
	}
	len = s->buf[pos & (DNS_BUF - 1)];
	if (len == 0) {
		w->state = WALK_DONE;
		return 1;
	}
	/* 0xc0: a compression pointer; 0x40, 0x80: obsolete label types */
	if (len > DNS_MAX_LABEL || pos + 1 + len >= DNS_MAX_NAME) {
		w->state = WALK_MALFORMED;
		return 1;
	}
	if (pos + 1 + len > w->len) {
		w->state = WALK_TRUNCATED;
		return 1;
	}
	for (j = 0; j < DNS_MAX_LABEL; j++) {
		__u8 c;

		if (j >= len)
			break;
		c = s->buf[(pos + 1 + j) & (DNS_BUF - 1)];
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		h = (h ^ c) * FNV_PRIME;
	}
	s->label_hash[w->labels & (DNS_MAX_LABELS - 1)] = h;
	w->labels++;
	w->pos = pos + 1 + len;
	return 0;
}

static __always_inline bool dns_emit(struct __sk_buff *skb, const struct pkt *p,
				     const struct dns_scratch *s, const struct dns_blocked *b,
				     __u32 name_end, __u16 qtype, __u8 action)
{
	struct dns_query_event *ev;
	__u64 pending;

	ev = events_reserve(sizeof(*ev), &pending);
	if (!ev)
		return false;
	fill_packet_event(&ev->ev, skb->ifindex, p, EVENT_DNS_QUERY, action, b->list);
	ev->qtype = qtype;
	/* the wire form as queried: userspace makes it dotted and lowercase */
	ev->name_len = name_end + 1;
	ev->matched_labels = b->labels;
	__builtin_memset(ev->pad, 0, sizeof(ev->pad));
	__builtin_memcpy(ev->name, s->buf, sizeof(ev->name));
	events_submit(ev, pending, sizeof(*ev));
	return true;
}

/*
 * Where the DNS message of a packet to port 53 starts and how many of its bytes the packet
 * holds; 0 when this is no DNS message start.
 */
static __always_inline __u32 dns_message(struct __sk_buff *skb, const struct pkt *p, __u32 *off)
{
	__u32 l4 = p->l4_off;

	if (p->proto == IPPROTO_UDP_) {
		if (p->l4_len < 8)
			return 0;
		*off = l4 + 8;
		return p->l4_len - 8;
	}

	__u8 doff;
	__be16 prefix;
	__u32 hlen, seg, msg;

	if (bpf_skb_load_bytes(skb, l4 + 12, &doff, 1))
		return 0;
	hlen = (doff >> 4) * 4;
	if (p->l4_len < hlen + 2)
		return 0;
	if (bpf_skb_load_bytes(skb, l4 + hlen, &prefix, 2))
		return 0;
	seg = p->l4_len - hlen - 2;
	msg = bpf_ntohs(prefix);
	*off = l4 + hlen + 2;
	return msg < seg ? msg : seg;
}

static __always_inline int dns_stage(struct __sk_buff *skb)
{
	struct tc_handover *h = tc_handover_get();
	const struct dns_settings *set;
	const struct dns_blocked *b = NULL;
	struct dns_scratch *s;
	struct dns_walk w = {};
	__u32 zero = 0, off = 0, msg, n, i;
	__u8 hdr[DNS_HDR_LEN];
	__u16 qtype;
	__u64 key;
	bool ingress;

	if (!h)
		return TC_ACT_UNSPEC;
	ingress = h->ingress;
	if (h->p.parse_result != PARSE_OK || !(h->p.flags & PKT_F_PORTS) ||
	    h->p.dport != DNS_PORT || (h->p.proto != IPPROTO_UDP_ && h->p.proto != IPPROTO_TCP_))
		return tc_chain_next(skb, ingress, TC_STAGE_DNS);
	set = bpf_map_lookup_elem(&dns_settings, &zero);
	s = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!set || !(set->flags & DNS_SET_ENABLED) || !s)
		return tc_chain_next(skb, ingress, TC_STAGE_DNS);
	dns_count(DNS_STAT_SEEN);

	msg = dns_message(skb, &h->p, &off);
	if (msg < DNS_HDR_LEN) {
		/* a UDP datagram too short for a header was meant as one; a TCP segment not */
		dns_count(h->p.proto == IPPROTO_UDP_ ? DNS_STAT_TRUNCATED : DNS_STAT_NOT_QUERY);
		return tc_chain_next(skb, ingress, TC_STAGE_DNS);
	}
	if (bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr))) {
		dns_count(DNS_STAT_TRUNCATED);
		return tc_chain_next(skb, ingress, TC_STAGE_DNS);
	}
	if ((hdr[2] & DNS_FLAG_QR) || DNS_OPCODE(hdr[2]) != 0 || (hdr[4] == 0 && hdr[5] == 0)) {
		dns_count(DNS_STAT_NOT_QUERY);
		return tc_chain_next(skb, ingress, TC_STAGE_DNS);
	}
	n = msg - DNS_HDR_LEN;
	if (n > DNS_QUESTION_MAX)
		n = DNS_QUESTION_MAX;
	if (n == 0) {
		dns_count(DNS_STAT_TRUNCATED);
		return tc_chain_next(skb, ingress, TC_STAGE_DNS);
	}
	_Static_assert(DNS_QUESTION_MAX <= DNS_BUF, "the question fits the buffer");
	n = VERIFIER_LEN(n, DNS_BUF);
	if (bpf_skb_load_bytes(skb, off + DNS_HDR_LEN, s->buf, n)) {
		dns_count(DNS_STAT_TRUNCATED);
		return tc_chain_next(skb, ingress, TC_STAGE_DNS);
	}
	w.s = s;
	w.len = n;
	bpf_loop(DNS_MAX_NAME, dns_label, &w, 0);
	if (w.state == WALK_DONE && w.pos + 5 > w.len)
		w.state = WALK_TRUNCATED;
	if (w.state != WALK_DONE) {
		dns_count(w.state == WALK_MALFORMED ? DNS_STAT_MALFORMED : DNS_STAT_TRUNCATED);
		return tc_chain_next(skb, ingress, TC_STAGE_DNS);
	}
	dns_count(DNS_STAT_QUERIES);
	qtype = (__u16)s->buf[(w.pos + 1) & (DNS_BUF - 1)] << 8 |
		s->buf[(w.pos + 2) & (DNS_BUF - 1)];

	key = FNV_OFFSET;
	for (i = 0; i < DNS_MAX_LABELS; i++) {
		if (i >= w.labels)
			break;
		key = dns_mix(key, s->label_hash[(w.labels - 1 - i) & (DNS_MAX_LABELS - 1)]);
		b = bpf_map_lookup_elem(&dns_blocklist, &key);
		if (b)
			break;
	}
	if (!b)
		return tc_chain_next(skb, ingress, TC_STAGE_DNS);

	if (b->action == DNS_ACTION_DROP) {
		dns_count(DNS_STAT_BLOCKED);
		dns_count(dns_emit(skb, &h->p, s, b, w.pos, qtype, EVENT_ACTION_DROP) ?
				  DNS_STAT_EVENTS_SENT :
				  DNS_STAT_EVENTS_DROPPED);
		return TC_ACT_SHOT;
	}
	dns_count(DNS_STAT_ALERTED);
	dns_count(dns_emit(skb, &h->p, s, b, w.pos, qtype, EVENT_ACTION_PASS) ?
			  DNS_STAT_EVENTS_SENT :
			  DNS_STAT_EVENTS_DROPPED);
	return tc_chain_next(skb, ingress, TC_STAGE_DNS);
}

SEC("tc")
int tc_dns(struct __sk_buff *skb)
{
	return dns_stage(skb);
}
