//! The one table the replay learns the pipeline from: each stage's counters, which of them are
//! decisions, and which event types it emits. A new stage adds its row here (in packet-path
//! order within its hook) and the replay attributes verdicts to it without other changes.

use libbpf_rs::skel::Skel;
use libbpf_rs::Object;

use crate::abi::{ct_stat, dns_stat, fw_stat, ids_stat, lb_stat, rl_stat, scrub_stat, ti_stat};
use crate::loader::Dataplane;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Xdp,
    Tc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// the stage decided the packet's fate here (pass by rule, drop, answer)
    Decides,
    /// a side effect or classification worth showing
    Note,
    /// bookkeeping the replay does not show
    Hidden,
}

#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub slot: u32,
    pub name: &'static str,
    pub role: Role,
}

const fn slot(slot: u32, name: &'static str, role: Role) -> Slot {
    Slot { slot, name, role }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// per-rule hit counters of the firewall's active generation
    FirewallHits,
    /// the rule_id of the stage's events
    Events,
}

pub struct Stage {
    pub name: &'static str,
    pub hook: Hook,
    /// the object whose PERCPU_ARRAY `stats_map` holds the counters
    pub object: fn(&Dataplane) -> &Object,
    pub stats_map: &'static str,
    pub slots_total: u32,
    /// the slot that moves for every packet the stage looked at
    pub seen: u32,
    pub slots: &'static [Slot],
    /// `event_type` of the events it emits (src/events.rs)
    pub event_types: &'static [&'static str],
    pub rules: Rules,
}

use Role::{Decides, Hidden, Note};

pub static STAGES: &[Stage] = &[
    Stage {
        name: "firewall",
        hook: Hook::Xdp,
        object: |dp| dp.firewall.object(),
        stats_map: "fw_stats",
        slots_total: fw_stat::FW_STAT_COUNT.0,
        seen: fw_stat::FW_STAT_SEEN.0,
        slots: &[
            slot(fw_stat::FW_STAT_PASS_RULE.0, "pass_rule", Decides),
            slot(fw_stat::FW_STAT_PASS_DEFAULT.0, "pass_default", Decides),
            slot(fw_stat::FW_STAT_PASS_ALLOWLIST.0, "pass_allowlist", Decides),
            slot(fw_stat::FW_STAT_PASS_NON_IP.0, "pass_non_ip", Decides),
            slot(fw_stat::FW_STAT_PASS_MALFORMED.0, "pass_malformed", Decides),
            slot(fw_stat::FW_STAT_PASS_MONITOR.0, "pass_monitor", Decides),
            slot(fw_stat::FW_STAT_PASS_TRACKED.0, "pass_tracked", Decides),
            slot(fw_stat::FW_STAT_DROP_RULE.0, "drop_rule", Decides),
            slot(fw_stat::FW_STAT_DROP_DEFAULT.0, "drop_default", Decides),
            slot(fw_stat::FW_STAT_DROP_MALFORMED.0, "drop_malformed", Decides),
            slot(fw_stat::FW_STAT_DROP_BLOCKED.0, "drop_blocked", Decides),
            slot(fw_stat::FW_STAT_EVENTS_SENT.0, "events_sent", Hidden),
            slot(fw_stat::FW_STAT_EVENTS_DROPPED.0, "events_dropped", Note),
        ],
        event_types: &["firewall"],
        rules: Rules::FirewallHits,
    },
    Stage {
        name: "ratelimit",
        hook: Hook::Xdp,
        object: |dp| dp.ratelimit.object(),
        stats_map: "rl_stats",
        slots_total: rl_stat::RL_STAT_COUNT.0,
        seen: rl_stat::RL_STAT_SEEN.0,
        slots: &[
            slot(rl_stat::RL_STAT_PASS_UNLIMITED.0, "pass_unlimited", Hidden),
            slot(rl_stat::RL_STAT_PASS_NO_POLICY.0, "pass_no_policy", Hidden),
            slot(rl_stat::RL_STAT_PASS_IN_RATE.0, "pass_in_rate", Note),
            slot(rl_stat::RL_STAT_PASS_OVER_RATE.0, "pass_over_rate", Decides),
            slot(rl_stat::RL_STAT_DROP_OVER_RATE.0, "drop_over_rate", Decides),
            slot(rl_stat::RL_STAT_EVENTS_SENT.0, "events_sent", Hidden),
            slot(rl_stat::RL_STAT_EVENTS_DROPPED.0, "events_dropped", Note),
            slot(rl_stat::RL_STAT_ICMP_PASSED.0, "icmp_passed", Note),
            slot(rl_stat::RL_STAT_ICMP_DROPPED.0, "icmp_dropped", Decides),
            slot(rl_stat::RL_STAT_ICMP_OVERSIZED.0, "icmp_oversized", Decides),
            slot(rl_stat::RL_STAT_AMP_PASSED.0, "amp_passed", Note),
            slot(rl_stat::RL_STAT_AMP_DROPPED.0, "amp_dropped", Decides),
            slot(rl_stat::RL_STAT_SYN_RECEIVED.0, "syn_received", Hidden),
            slot(
                rl_stat::RL_STAT_SYNCOOKIES_SENT.0,
                "syncookie_sent",
                Decides,
            ),
            slot(
                rl_stat::RL_STAT_SYNCOOKIE_ACK_VALID.0,
                "syncookie_ack_valid",
                Note,
            ),
            slot(
                rl_stat::RL_STAT_SYNCOOKIE_ACK_INVALID.0,
                "syncookie_ack_invalid",
                Decides,
            ),
        ],
        event_types: &["ratelimit", "ddos"],
        rules: Rules::Events,
    },
    Stage {
        name: "lb",
        hook: Hook::Xdp,
        object: |dp| dp.lb.object(),
        stats_map: "lb_stats",
        slots_total: lb_stat::LB_STAT_COUNT.0,
        seen: lb_stat::LB_STAT_SEEN.0,
        slots: &[
            slot(lb_stat::LB_STAT_MISS.0, "miss", Hidden),
            slot(lb_stat::LB_STAT_FORWARDED.0, "forwarded", Decides),
            slot(
                lb_stat::LB_STAT_FORWARDED_STACK.0,
                "forwarded_stack",
                Decides,
            ),
            slot(lb_stat::LB_STAT_NO_BACKEND.0, "no_backend", Decides),
            slot(lb_stat::LB_STAT_REPLY.0, "reply", Decides),
            slot(lb_stat::LB_STAT_REPLY_LOCAL.0, "reply_local", Note),
            slot(lb_stat::LB_STAT_UNSUPPORTED.0, "unsupported", Note),
            slot(lb_stat::LB_STAT_MIRRORED.0, "mirrored", Note),
            slot(lb_stat::LB_STAT_STEERED.0, "steered", Note),
        ],
        event_types: &[],
        rules: Rules::Events,
    },
    Stage {
        name: "conntrack",
        hook: Hook::Tc,
        object: |dp| dp.firewall.object(),
        stats_map: "ct_stats",
        slots_total: ct_stat::CT_STAT_COUNT.0,
        // tc_conntrack looks every tracked packet up once; xdp_firewall's fast path does not
        // count its lookups
        seen: ct_stat::CT_STAT_LOOKUPS.0,
        slots: &[
            slot(ct_stat::CT_STAT_HITS.0, "hits", Hidden),
            slot(ct_stat::CT_STAT_NEW.0, "new", Note),
            slot(ct_stat::CT_STAT_ESTABLISHED.0, "established", Note),
            slot(ct_stat::CT_STAT_CLOSED.0, "closed", Note),
            slot(ct_stat::CT_STAT_INVALID.0, "invalid", Note),
            slot(ct_stat::CT_STAT_RELATED.0, "related", Note),
            slot(ct_stat::CT_STAT_EXPIRED.0, "expired", Note),
            slot(ct_stat::CT_STAT_DROP_INVALID.0, "drop_invalid", Decides),
            slot(ct_stat::CT_STAT_FAST_PATH.0, "fast_path", Note),
            slot(ct_stat::CT_STAT_REUSED.0, "reused", Note),
        ],
        event_types: &[],
        rules: Rules::Events,
    },
    Stage {
        name: "ids",
        hook: Hook::Tc,
        object: |dp| dp.ids.object(),
        stats_map: "ids_stats",
        slots_total: ids_stat::IDS_STAT_COUNT.0,
        seen: ids_stat::IDS_STAT_SEEN.0,
        slots: &[
            slot(ids_stat::IDS_STAT_CANDIDATE.0, "candidate", Hidden),
            slot(ids_stat::IDS_STAT_TRUNCATED.0, "payload_truncated", Note),
            slot(ids_stat::IDS_STAT_MATCH_ALERT.0, "match_alert", Decides),
            slot(ids_stat::IDS_STAT_MATCH_DROP.0, "match_drop", Decides),
            slot(ids_stat::IDS_STAT_SAMPLED_OUT.0, "sampled_out", Note),
            slot(ids_stat::IDS_STAT_EVENTS_SENT.0, "events_sent", Hidden),
            slot(ids_stat::IDS_STAT_EVENTS_DROPPED.0, "events_dropped", Note),
            slot(
                ids_stat::IDS_STAT_LOAD_FAILED.0,
                "payload_load_failed",
                Note,
            ),
        ],
        event_types: &["alert"],
        rules: Rules::Events,
    },
    Stage {
        name: "threatintel",
        hook: Hook::Tc,
        object: |dp| dp.threatintel.object(),
        stats_map: "ti_stats",
        slots_total: ti_stat::TI_STAT_COUNT.0,
        seen: ti_stat::TI_STAT_SEEN.0,
        slots: &[
            slot(ti_stat::TI_STAT_BLOOM_NEGATIVE.0, "bloom_negative", Hidden),
            slot(
                ti_stat::TI_STAT_BLOOM_FALSE_POSITIVE.0,
                "bloom_false_positive",
                Note,
            ),
            slot(ti_stat::TI_STAT_MATCH_ALERT.0, "match_alert", Decides),
            slot(ti_stat::TI_STAT_MATCH_DROP.0, "match_drop", Decides),
            slot(
                ti_stat::TI_STAT_MATCH_QUARANTINE.0,
                "match_quarantine",
                Decides,
            ),
            slot(
                ti_stat::TI_STAT_QUARANTINE_FAILED.0,
                "quarantine_failed",
                Decides,
            ),
            slot(ti_stat::TI_STAT_EVENTS_SENT.0, "events_sent", Hidden),
            slot(ti_stat::TI_STAT_EVENTS_DROPPED.0, "events_dropped", Note),
        ],
        event_types: &["threatintel"],
        rules: Rules::Events,
    },
    Stage {
        name: "dns",
        hook: Hook::Tc,
        object: |dp| dp.dns.object(),
        stats_map: "dns_stats",
        slots_total: dns_stat::DNS_STAT_COUNT.0,
        seen: dns_stat::DNS_STAT_SEEN.0,
        slots: &[
            slot(dns_stat::DNS_STAT_QUERIES.0, "query", Note),
            slot(dns_stat::DNS_STAT_BLOCKED.0, "blocked", Decides),
            slot(dns_stat::DNS_STAT_ALERTED.0, "alerted", Decides),
            slot(dns_stat::DNS_STAT_NOT_QUERY.0, "not_query", Hidden),
            slot(dns_stat::DNS_STAT_MALFORMED.0, "malformed", Note),
            slot(dns_stat::DNS_STAT_TRUNCATED.0, "truncated", Note),
            slot(dns_stat::DNS_STAT_EVENTS_SENT.0, "events_sent", Hidden),
            slot(dns_stat::DNS_STAT_EVENTS_DROPPED.0, "events_dropped", Note),
        ],
        event_types: &["dns"],
        rules: Rules::Events,
    },
    Stage {
        name: "scrub",
        hook: Hook::Tc,
        object: |dp| dp.scrub.object(),
        stats_map: "scrub_stats",
        slots_total: scrub_stat::SCRUB_STAT_COUNT.0,
        seen: scrub_stat::SCRUB_STAT_SEEN.0,
        slots: &[
            slot(scrub_stat::SCRUB_STAT_TTL_RAISED.0, "ttl_raised", Note),
            slot(scrub_stat::SCRUB_STAT_MSS_CLAMPED.0, "mss_clamped", Note),
            slot(scrub_stat::SCRUB_STAT_DF_CLEARED.0, "df_cleared", Note),
            slot(
                scrub_stat::SCRUB_STAT_IP_ID_RANDOMISED.0,
                "ip_id_randomised",
                Note,
            ),
        ],
        event_types: &[],
        rules: Rules::Events,
    },
];

/// The stage an event of `event_type` comes from.
pub fn of_event(event_type: &str) -> Option<&'static Stage> {
    STAGES.iter().find(|s| s.event_types.contains(&event_type))
}
