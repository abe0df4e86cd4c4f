/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Included by BPF programs and (through BTF) by userspace: tc_dns's blocklist, settings and
 * counters.
 *
 * Domain key (the one definition; src/maps/dns.rs implements it again and tests/tc_dns.rs
 * checks both agree): with FNV-1a 64 (offset 0xcbf29ce484222325, prime 0x100000001b3),
 *   label_hash(L) = FNV-1a over the ASCII-lowercased bytes of label L
 *   key(L1.L2...Ln) = k1, where k(n+1) = offset and k(i) = mix((k(i+1) ^ label_hash(Li)) * prime)
 *   mix(x) = x ^ (x >> 32)
 * so the keys of every suffix of a name fall out of one right-to-left walk over its labels:
 * `example.com` is the key tc_dns computes after two labels of `a.b.example.com`, and
 * `badexample.com` shares no suffix key with it. Keys are 64 bits: two names colliding is
 * possible in principle (about n^2 / 2^65 for n names) and accepted.
 */
#ifndef EBPFSENTINEL_ABI_DNS_H
#define EBPFSENTINEL_ABI_DNS_H

enum dns_limits {
	/* a name in wire form, root label included (RFC 1035 2.3.4) */
	DNS_MAX_NAME = 255,
	DNS_MAX_LABEL = 63,
	/*
	 * The rightmost labels whose suffixes are looked up: a blocklist entry may have at most
	 * this many labels, a queried name may have more.
	 */
	DNS_MAX_LABELS = 16,
	DNS_MAX_BLOCKED = 1 << 21,
	DNS_MAX_RUNTIME = 1 << 16,
	/* dns_blocked.list of `dns block`: survives feed refreshes, removed by `dns unblock` */
	DNS_LIST_RUNTIME = 0xfffe,
	/* dns_blocked.list of dns.blocklist.domains; feeds are 1 + their index */
	DNS_LIST_CONFIG = 0,
	DNS_PORT = 53,
};

enum dns_action {
	DNS_ACTION_ALERT = 0,
	DNS_ACTION_DROP = 1,
};

/* dns_blocklist[key] */
struct dns_blocked {
	__u16 list;  /* DNS_LIST_CONFIG, 1 + feed index, DNS_LIST_RUNTIME */
	__u8 action; /* enum dns_action */
	__u8 labels; /* of the listed domain */
	__u32 pad;
};

/*
 * dns_runtime_names[key]: the name of each DNS_LIST_RUNTIME entry, for `dns list` and
 * `dns unblock`; the kernel never reads it (config and feed names are the daemon's).
 */
struct dns_name {
	char name[256]; /* lowercase, dotted, NUL-padded */
};

enum dns_settings_flags {
	DNS_SET_ENABLED = 1 << 0,
};

/* dns_settings[0] */
struct dns_settings {
	__u32 flags; /* enum dns_settings_flags */
	__u32 pad;
};

enum dns_stat {
	/* UDP or TCP packets to port 53 the stage looked at */
	DNS_STAT_SEEN = 0,
	/* well-formed queries checked against the blocklist */
	DNS_STAT_QUERIES,
	DNS_STAT_BLOCKED,
	DNS_STAT_ALERTED,
	/* responses, other opcodes, no question, TCP segments too short for a message */
	DNS_STAT_NOT_QUERY,
	/* a bad label length, a compression pointer, a name over DNS_MAX_NAME */
	DNS_STAT_MALFORMED,
	/* the message ends inside the question */
	DNS_STAT_TRUNCATED,
	DNS_STAT_EVENTS_SENT,
	DNS_STAT_EVENTS_DROPPED,
	DNS_STAT_COUNT,
};

_Static_assert(sizeof(struct dns_blocked) == 8, "dns_blocked layout");
_Static_assert(sizeof(struct dns_settings) == 8, "dns_settings layout");

#endif
