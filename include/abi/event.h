/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Included by BPF programs and (through BTF) by userspace: the shared ring-buffer record. */
#ifndef EBPFSENTINEL_ABI_EVENT_H
#define EBPFSENTINEL_ABI_EVENT_H

enum event_kind {
	EVENT_FW_RULE = 1,           /* a rule with the log flag matched */
	EVENT_FW_DEFAULT_POLICY = 2, /* monitor mode: the default policy would drop */
	EVENT_FW_MALFORMED = 3,      /* monitor mode: a malformed packet would be dropped */
	/* a rate-limit key went over its rate; rule_id names the policy */
	EVENT_RL_OVER_RATE = 4,
	/* ICMP guard: a source over its rate, or an oversized echo (action drop) */
	EVENT_DDOS_ICMP = 5,
	/* amplification guard: a reflector over its rate (rule_id: the port's index) */
	EVENT_DDOS_AMP = 6,
	/* tc_threatintel: an address of the packet is an IOC; rule_id is the feed's id */
	EVENT_TI_MATCH = 7,
	/* tc_ids: a signature matched; rule_id is EVENT_RULE(generation, rank of the IDS rule) */
	EVENT_IDS_ALERT = 8,
	/*
	 * tc_dns: a query for a blocklisted name; the record is a struct dns_query_event,
	 * rule_id the list that blocks it (struct dns_blocked.list)
	 */
	EVENT_DNS_QUERY = 9,
};

enum event_action {
	EVENT_ACTION_PASS = 0,
	EVENT_ACTION_DROP = 1,
	/* monitor mode: the verdict was drop, the packet passed */
	EVENT_ACTION_WOULD_DROP = 2,
	/* tagged with the quarantine VLAN and passed */
	EVENT_ACTION_QUARANTINE = 3,
};

/*
 * rule_id of a rule: its rank, with the ruleset generation in the top bit so that events
 * produced around a reload are named from the ruleset that decided them.
 */
enum event_rule {
	EVENT_RULE_GEN_SHIFT = 15,
	EVENT_RULE_RANK_MASK = 0x7fff,
	/* no rule decided */
	EVENT_NO_RULE = 0xffff,
};

#define EVENT_RULE(gen, rank) \
	((__u16)(((gen) << EVENT_RULE_GEN_SHIFT) | ((rank) & EVENT_RULE_RANK_MASK)))

/*
 * 56 bytes, the seed's PacketEvent. Layout (offset size field):
 *   0  8  timestamp_ns   bpf_ktime_get_boot_ns()
 *   8 16  src_addr       network order; IPv4 as ::ffff:a.b.c.d (never valid on an IPv6 wire)
 *  24 16  dst_addr       same
 *  40  2  src_port       host order; ICMP/ICMPv6: the type
 *  42  2  dst_port       host order; ICMP/ICMPv6: the code
 *  44  4  ifindex        ingress interface
 *  48  2  rule_id        EVENT_RULE(generation, rank) of the deciding rule, or EVENT_NO_RULE
 *  50  2  vlan_id        outer 802.1Q/802.1ad VID, 0 when untagged
 *  52  1  protocol       IP protocol / IPv6 upper-layer header
 *  53  1  kind           enum event_kind
 *  54  1  action         enum event_action
 *  55  1  cpu            bpf_get_smp_processor_id(), saturated at 255
 */
struct packet_event {
	__u64 timestamp_ns;
	__u8 src_addr[16];
	__u8 dst_addr[16];
	__u16 src_port;
	__u16 dst_port;
	__u32 ifindex;
	__u16 rule_id;
	__u16 vlan_id;
	__u8 protocol;
	__u8 kind;
	__u8 action;
	__u8 cpu;
};

_Static_assert(sizeof(struct packet_event) == 56, "packet_event is the 56-byte seed record");

/*
 * The one longer record on the ring: a packet_event (kind EVENT_DNS_QUERY) and the queried
 * name. The consumer tells the two apart by the record's length and then by kind.
 */
struct dns_query_event {
	struct packet_event ev;
	__u16 qtype;
	/* bytes of name used: the name in wire form as queried, root label included */
	__u8 name_len;
	/* labels of the blocklisted suffix that matched */
	__u8 matched_labels;
	__u8 pad[4];
	char name[256];
};

_Static_assert(sizeof(struct dns_query_event) == 320, "dns_query_event layout");

#endif
