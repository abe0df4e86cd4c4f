// SPDX-License-Identifier: GPL-2.0-only
/*
 * tc_ids: signature matching on the transport payload. The packet's destination port, source
 * port and "any port" each name at most one list of candidate rules (ids_index); a rule
 * matches when its ports and conntrack condition hold and each of its contents is found in
 * the first IDS_SCAN_BYTES payload bytes, copied once into a per-CPU buffer. Contents are
 * compared eight bytes at a time; candidate start positions come from a SWAR search for the
 * content's first byte. A drop rule drops; alert rules report (sampled) and pass.
 */
#include "lib/common.bpf.h"
#include "lib/parse.bpf.h"
#include "lib/events.bpf.h"
#include "lib/tc_chain.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, IDS_MAX_KEYS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ids_key);
	__type(value, struct ids_bucket);
} ids_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ES_GENERATIONS *IDS_MAX_RULES);
	__type(key, __u32);
	__type(value, struct ids_rule);
} ids_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ids_settings);
} ids_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IDS_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} ids_stats SEC(".maps");

/* the scanned payload; the tail lets a last-word compare read past the end */
struct ids_payload {
	__u8 bytes[IDS_SCAN_BYTES + IDS_MAX_PATTERN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ids_payload);
} ids_payload SEC(".maps");

/* BTF for userspace */
enum ids_limits _ids_limits_btf;
enum ids_side _ids_side_btf;
enum ids_content_flags _ids_content_flags_btf;
enum ids_action _ids_action_btf;
enum ids_rule_flags _ids_rule_flags_btf;
enum ids_settings_flags _ids_settings_flags_btf;
enum ids_stat _ids_stat_btf;

#define ONES    0x0101010101010101ULL
#define HIGHS   0x8080808080808080ULL
#define NO_RANK 0xffffffff

static __always_inline void ids_count(__u32 stat)
{
	__u64 *c = bpf_map_lookup_elem(&ids_stats, &stat);

	if (c)
		*c += 1;
}

/* ASCII A-Z to a-z in each byte when fold is all ones, nothing else changed */
static __always_inline __u64 fold_lower(__u64 w, __u64 fold)
{
	__u64 low7 = w & ~HIGHS;
	__u64 ge_a = low7 + 0x3f3f3f3f3f3f3f3fULL; /* bit 7 set when byte >= 'A' */
	__u64 gt_z = low7 + 0x2525252525252525ULL; /* bit 7 set when byte > 'Z' */
	__u64 upper = ge_a & ~gt_z & ~w & HIGHS;

	return w | ((upper >> 2) & fold);
}

struct ids_scan {
	const __u8 *buf;
	const struct ids_content *c;
	__u64 first;  /* the first byte in every lane */
	__u64 second; /* the second byte in every lane */
	/* HIGHS for a one-byte content (every lane passes the second-byte test), else 0 */
	__u64 second_any;
	__u64 fold; /* all ones for a nocase content */
	__u64 next; /* where the scan goes on */
	__u32 last; /* the last start position that leaves room for the content */
	__u32 found;
};

/*
 * Whether the content starts at pos. Always eight words, without branches: the verifier
 * walks this once per candidate loop iteration, not once per content length.
 */
static __always_inline bool ids_cmp(const __u8 *buf, __u64 pos, const struct ids_content *c,
				    __u64 fold)
{
	__u64 diff = 0;
	int j;

#pragma unroll
	for (j = 0; j < IDS_PATTERN_WORDS; j++) {
		__u64 w = fold_lower(*(const __u64 *)(buf + pos + j * 8), fold);

		diff |= (w ^ c->words[j]) & c->masks[j];
	}
	return diff == 0;
}

/* high bits of the lanes at p where the content's first two bytes are */
static __always_inline __u64 ids_lanes(const __u8 *p, const struct ids_scan *sc)
{
	__u64 w = fold_lower(*(const __u64 *)p, sc->fold) ^ sc->first;
	__u64 w2 = fold_lower(*(const __u64 *)(p + 1), sc->fold) ^ sc->second;

	/* false positives above a true lane are re-checked by the compare */
	return ((w - ONES) & ~w & HIGHS) & (((w2 - ONES) & ~w2 & HIGHS) | sc->second_any);
}

/*
 * bpf_loop callback, one step of the scan from sc->next: the sixteen positions there hold no
 * candidate (skip them), or the first candidate is compared (and the scan resumes after it).
 * No loop inside: the verifier walks a few straight paths per step.
 */
static long ids_step(__u64 index, void *ctx)
{
	struct ids_scan *sc = ctx;
	const __u8 *buf = sc->buf;
	__u64 pos0 = sc->next, pos, m;

	/* last <= IDS_SCAN_BYTES - 1: the masks only tell the verifier so */
	_Static_assert(IDS_SCAN_BYTES == 1024, "position mask");
	if (pos0 > sc->last)
		return 1;
	VERIFIER_MASK(pos0, 1023);
	m = ids_lanes(buf + pos0, sc);
	if (m) {
		pos = pos0 + (ctz64(m) >> 3);
	} else {
		m = ids_lanes(buf + pos0 + 8, sc);
		if (!m) {
			sc->next = pos0 + 16;
			return 0;
		}
		pos = pos0 + 8 + (ctz64(m) >> 3);
	}
	if (pos > sc->last)
		return 1;
	VERIFIER_MASK(pos, 1023);
	if (ids_cmp(buf, pos, sc->c, sc->fold)) {
		sc->found = 1;
		return 1;
	}
	sc->next = pos + 1;
	return 0;
}

/* Whether content c occurs in the first n bytes of buf, within its offset/depth window. */
static __always_inline bool ids_find(const __u8 *buf, __u32 n, const struct ids_content *c)
{
	struct ids_scan sc = {};
	__u32 start, end, len = c->len;

	if (len == 0 || len > IDS_MAX_PATTERN)
		return false;
	start = c->offset;
	end = c->depth ? start + c->depth : n;
	if (end > n)
		end = n;
	if (end < start + len)
		return false;
	sc.next = start;
	sc.last = end - len;
	sc.buf = buf;
	sc.c = c;
	sc.fold = c->flags & IDS_C_NOCASE ? ~0ULL : 0;
	sc.first = (c->words[0] & 0xff) * ONES;
	sc.second = ((c->words[0] >> 8) & 0xff) * ONES;
	sc.second_any = len < 2 ? HIGHS : 0;
	/* every step moves on by one position at least */
	bpf_loop(sc.last - start + 1, ids_step, &sc, 0);
	return sc.found;
}

struct ids_eval {
	/* the candidate lists of the destination port, source port and any port; NULL: none */
	const struct ids_bucket *b[3];
	const __u8 *buf;
	__u32 n;
	__u32 gen;
	__u16 sport;
	__u16 dport;
	__u32 ct_class;
	__u32 drop_rank;
	__u32 nalerts;
	__u32 alerts[IDS_MAX_ALERTS];
};

struct ids_contents {
	const struct ids_rule *r;
	const __u8 *buf;
	__u32 n;
	__u32 missing;
};

/* bpf_loop callback: the index-th content of a rule */
static long ids_content_cb(__u64 index, void *ctx)
{
	struct ids_contents *cc = ctx;

	if (index >= IDS_MAX_CONTENTS)
		return 1;
	if (ids_find(cc->buf, cc->n, &cc->r->contents[index]))
		return 0;
	cc->missing = 1;
	return 1;
}

/*
 * bpf_loop callback: the index-th candidate over the three lists in turn. One call site for
 * every list keeps the verifier's walk of the callbacks to one.
 */
static long ids_rule_cb(__u64 index, void *ctx)
{
	struct ids_eval *e = ctx;
	const struct ids_bucket *b;
	struct ids_contents cc = {};
	const struct ids_rule *r;
	__u32 i = index, rank, slot, ncontents;

	b = e->b[0];
	if (b) {
		if (i < b->count)
			goto found;
		i -= b->count;
	}
	b = e->b[1];
	if (b) {
		if (i < b->count)
			goto found;
		i -= b->count;
	}
	b = e->b[2];
	if (!b || i >= b->count)
		return 1;
found:
	if (i >= IDS_MAX_PER_KEY)
		return 1;
	rank = b->ranks[i] & (IDS_MAX_RULES - 1);
	slot = (e->gen & 1) * IDS_MAX_RULES + rank;
	r = bpf_map_lookup_elem(&ids_rules, &slot);
	if (!r)
		return 0;
	if (e->sport < r->sport_lo || e->sport > r->sport_hi || e->dport < r->dport_lo ||
	    e->dport > r->dport_hi)
		return 0;
	if ((r->flags & IDS_R_ESTABLISHED) && e->ct_class != CT_CLASS_ESTABLISHED)
		return 0;
	ncontents = r->ncontents;
	if (ncontents) {
		cc.r = r;
		cc.buf = e->buf;
		cc.n = e->n;
		bpf_loop(ncontents > IDS_MAX_CONTENTS ? IDS_MAX_CONTENTS : ncontents,
			 ids_content_cb, &cc, 0);
		if (cc.missing)
			return 0;
	}
	if (r->action == IDS_ACTION_DROP) {
		e->drop_rank = rank;
		return 1;
	}
	ids_count(IDS_STAT_MATCH_ALERT);
	if (e->nalerts < IDS_MAX_ALERTS)
		e->alerts[e->nalerts & (IDS_MAX_ALERTS - 1)] = rank;
	e->nalerts++;
	return 0;
}

/* Copies up to IDS_SCAN_BYTES of the transport payload; returns how many, 0 for none. */
static __always_inline __u32 ids_load_payload(struct __sk_buff *skb, const struct pkt *p, __u8 *buf)
{
	__u32 hlen = 8, plen;
	__u64 n;
	__u8 doff;

	if (p->proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, p->l4_off + 12, &doff, 1))
			return 0;
		hlen = (doff >> 4) * 4;
	}
	if (p->l4_len <= hlen)
		return 0;
	plen = p->l4_len - hlen;
	if (plen > IDS_SCAN_BYTES) {
		ids_count(IDS_STAT_TRUNCATED);
		plen = IDS_SCAN_BYTES;
	}
	if (plen == 0)
		return 0;
	n = VERIFIER_LEN(plen, IDS_SCAN_BYTES);
	if (bpf_skb_load_bytes(skb, p->l4_off + hlen, buf, n)) {
		ids_count(IDS_STAT_LOAD_FAILED);
		return 0;
	}
	return n;
}

static __always_inline void ids_report(struct __sk_buff *skb, const struct pkt *p, __u32 gen,
				       __u32 rank, __u8 action)
{
	ids_count(
		emit_packet_event(skb->ifindex, p, EVENT_IDS_ALERT, action, EVENT_RULE(gen, rank)) ?
			IDS_STAT_EVENTS_SENT :
			IDS_STAT_EVENTS_DROPPED);
}

static __always_inline int ids_stage(struct __sk_buff *skb)
{
	struct tc_handover *h = tc_handover_get();
	const struct ids_settings *s;
	struct ids_eval e = {};
	struct ids_payload *pl;
	struct ids_key key = {};
	__u32 zero = 0, gen, total;
	bool ingress, sampled;
	int i;

	if (!h)
		return TC_ACT_UNSPEC;
	ingress = h->ingress;
	s = bpf_map_lookup_elem(&ids_settings, &zero);
	if (!s || !(s->flags & IDS_SET_ENABLED) || h->p.parse_result != PARSE_OK ||
	    !(h->p.flags & PKT_F_PORTS))
		return tc_chain_next(skb, ingress, TC_STAGE_IDS);
	ids_count(IDS_STAT_SEEN);
	gen = s->gen & 1;
	key.gen = gen;
	key.proto = h->p.proto;
	key.port = h->p.dport;
	key.side = IDS_SIDE_DST;
	e.b[0] = bpf_map_lookup_elem(&ids_index, &key);
	key.port = h->p.sport;
	key.side = IDS_SIDE_SRC;
	e.b[1] = bpf_map_lookup_elem(&ids_index, &key);
	key.port = 0;
	key.side = IDS_SIDE_ANY;
	e.b[2] = bpf_map_lookup_elem(&ids_index, &key);
	if (!e.b[0] && !e.b[1] && !e.b[2])
		return tc_chain_next(skb, ingress, TC_STAGE_IDS);
	ids_count(IDS_STAT_CANDIDATE);
	pl = bpf_map_lookup_elem(&ids_payload, &zero);
	if (!pl)
		return tc_chain_next(skb, ingress, TC_STAGE_IDS);
	e.n = ids_load_payload(skb, &h->p, pl->bytes);
	e.buf = pl->bytes;
	e.gen = gen;
	e.sport = h->p.sport;
	e.dport = h->p.dport;
	e.ct_class = h->p.ct_class;
	e.drop_rank = NO_RANK;

	total = (e.b[0] ? e.b[0]->count : 0) + (e.b[1] ? e.b[1]->count : 0) +
		(e.b[2] ? e.b[2]->count : 0);
	bpf_loop(total, ids_rule_cb, &e, 0);

	if (e.nalerts) {
		sampled = s->sample_all || bpf_get_prandom_u32() < s->sample_below;
#pragma unroll
		for (i = 0; i < IDS_MAX_ALERTS; i++) {
			if (i >= e.nalerts)
				break;
			if (sampled)
				ids_report(skb, &h->p, gen, e.alerts[i], EVENT_ACTION_PASS);
			else
				ids_count(IDS_STAT_SAMPLED_OUT);
		}
	}
	if (e.drop_rank != NO_RANK) {
		ids_count(IDS_STAT_MATCH_DROP);
		ids_report(skb, &h->p, gen, e.drop_rank, EVENT_ACTION_DROP);
		return TC_ACT_SHOT;
	}
	return tc_chain_next(skb, ingress, TC_STAGE_IDS);
}

SEC("tc")
int tc_ids(struct __sk_buff *skb)
{
	return ids_stage(skb);
}
