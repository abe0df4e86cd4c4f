//! The kernel<->user ABI as Rust sees it: the types the skeletons generate from
//! `include/abi/*.h` (never a hand-written twin), with byte views and layout checks.

use crate::skel::xdp_firewall::types;

pub use crate::skel::tc_conntrack::types::{ct_class, ct_limits, tc_stage};
pub use crate::skel::tc_conntrack::types::{
    ct_dir, ct_entry, ct_entry_flags, ct_key, ct_settings, ct_side, ct_stat, ct_state,
};
pub use crate::skel::tc_dns::types::{
    dns_action, dns_blocked, dns_limits, dns_name, dns_query_event, dns_settings,
    dns_settings_flags, dns_stat,
};
pub use crate::skel::tc_ids::types::{
    ids_action, ids_bucket, ids_content, ids_content_flags, ids_key, ids_limits, ids_rule,
    ids_rule_flags, ids_settings, ids_settings_flags, ids_side, ids_stat,
};
pub use crate::skel::tc_scrub::types::{scrub_flags, scrub_settings, scrub_stat};
pub use crate::skel::tc_threatintel::types::{
    ti_action, ti_bloom_fill_ctl, ti_bloom_key, ti_bloom_kind, ti_ioc, ti_limits, ti_lpm_v4_key,
    ti_lpm_v6_key, ti_settings, ti_settings_flags, ti_stat, ti_v4_key, ti_v6_key,
};
pub use crate::skel::xdp_lb::types::{
    lb_backend, lb_limits, lb_reverse_key, lb_service, lb_service_key, lb_service_stats, lb_stat,
};
pub use crate::skel::xdp_ratelimit::types::{
    rl_action, rl_amp_key, rl_amp_port, rl_bucket, rl_guard_key, rl_guards, rl_key, rl_key_mode,
    rl_limits, rl_match, rl_policy, rl_stat,
};
pub use types::{
    bench_addr, es_limits, event_action, event_kind, event_rule, fw_action, fw_bitmap, fw_cls_hash,
    fw_cls_v4_key, fw_cls_v6_key, fw_counter, fw_dim, fw_dim_layout, fw_exact_v4_key,
    fw_exact_v6_key, fw_family, fw_family_flags, fw_lpm_v4_key, fw_lpm_v6_key, fw_rule_flags,
    fw_rule_ref, fw_settings, fw_settings_flags, fw_stat, packet_event, xdp_stage,
};
pub use types::{ips_block, ips_settings, ips_settings_flags};

macro_rules! plain {
    ($($t:ty),*) => {
        $(
            // SAFETY: generated from C structs of fixed-width integers and byte arrays with
            // no implicit padding (the C side asserts the sizes), so every bit pattern is valid.
            unsafe impl plain::Plain for $t {}
        )*
    };
}

plain!(
    dns_blocked,
    dns_name,
    dns_query_event,
    dns_settings,
    lb_backend,
    lb_reverse_key,
    lb_service,
    lb_service_key,
    lb_service_stats,
    ids_bucket,
    ids_content,
    ids_key,
    ids_rule,
    ids_settings,
    scrub_settings,
    bench_addr,
    ct_entry,
    ct_key,
    ct_settings,
    ct_side,
    fw_bitmap,
    fw_cls_v4_key,
    fw_cls_v6_key,
    fw_counter,
    fw_exact_v4_key,
    fw_exact_v6_key,
    fw_lpm_v4_key,
    fw_lpm_v6_key,
    fw_rule_ref,
    fw_settings,
    ips_block,
    ips_settings,
    packet_event,
    rl_amp_key,
    rl_amp_port,
    rl_bucket,
    rl_guards,
    rl_key,
    rl_match,
    rl_policy,
    ti_bloom_fill_ctl,
    ti_bloom_key,
    ti_ioc,
    ti_lpm_v4_key,
    ti_lpm_v6_key,
    ti_settings,
    ti_v4_key,
    ti_v6_key
);

pub const GENERATIONS: u32 = es_limits::ES_GENERATIONS.0;
pub const MAX_RULES_PER_FAMILY: usize = es_limits::FW_MAX_RULES_PER_FAMILY.0 as usize;
pub const BITMAP_WORDS: usize = es_limits::FW_BITMAP_WORDS.0 as usize;
pub const MAX_RANKS: usize = es_limits::FW_MAX_RANKS.0 as usize;
/// Bitmap pool slots one generation may use.
pub const BITMAP_POOL_PER_GEN: usize = es_limits::FW_BITMAP_POOL_PER_GEN.0 as usize;
pub const BITMAP_ALL: u32 = es_limits::FW_BITMAP_ALL.0;
/// CIDR-only prefixes (trie plus exact hash, each) one generation may use.
pub const MAX_CIDRS_PER_GEN: usize = es_limits::FW_MAX_CIDRS.0 as usize / 2;
pub const MAX_CLASSIFIER_PREFIXES_PER_GEN: usize =
    es_limits::FW_MAX_CLASSIFIER_PREFIXES.0 as usize / 2;
pub const MAX_ALLOWLIST_PER_GEN: usize = es_limits::FW_MAX_ALLOWLIST.0 as usize / 2;
pub const DIM_BLOCK: usize = fw_dim_layout::FW_DIM_BLOCK.0 as usize;
pub const EVENT_NO_RULE: u16 = event_rule::EVENT_NO_RULE.0 as u16;

/// (generation, rank) of an event's rule_id, None when no rule decided.
pub fn event_rule_parts(rule_id: u16) -> Option<(u32, u16)> {
    (rule_id != EVENT_NO_RULE).then(|| {
        (
            u32::from(rule_id) >> event_rule::EVENT_RULE_GEN_SHIFT.0,
            rule_id & event_rule::EVENT_RULE_RANK_MASK.0 as u16,
        )
    })
}
pub const CLS_HASH_LENS: usize = fw_cls_hash::FW_CLS_HASH_LENS.0 as usize;
pub const LEN_NONE: u8 = fw_cls_hash::FW_LEN_NONE.0 as u8;

/// Slots of the per-CPU ct_stats array.
pub const CT_STAT_COUNT: usize = ct_stat::CT_STAT_COUNT.0 as usize;
/// Values of `enum ct_state`: one timeout each.
pub const CT_STATE_COUNT: usize = ct_state::CT_STATE_COUNT.0 as usize;

/// Slots of the per-CPU ti_stats array.
pub const TI_STAT_COUNT: usize = ti_stat::TI_STAT_COUNT.0 as usize;

const _: () = assert!(std::mem::size_of::<ids_key>() == 8);
const _: () =
    assert!(std::mem::size_of::<ids_bucket>() == 2 + 2 * ids_limits::IDS_MAX_PER_KEY.0 as usize);
const _: () = assert!(std::mem::size_of::<ids_content>() == 136);
const _: () =
    assert!(std::mem::size_of::<ids_rule>() == 16 + 136 * ids_limits::IDS_MAX_CONTENTS.0 as usize);
const _: () = assert!(std::mem::size_of::<ids_settings>() == 16);
/// Slots of the per-CPU ids_stats array.
pub const IDS_STAT_COUNT: usize = ids_stat::IDS_STAT_COUNT.0 as usize;
const _: () = assert!(std::mem::size_of::<ti_bloom_key>() == 20);
const _: () = assert!(std::mem::size_of::<ti_bloom_fill_ctl>() == 16);
const _: () = assert!(std::mem::size_of::<ti_ioc>() == 8);
const _: () = assert!(std::mem::size_of::<ti_v4_key>() == 4);
const _: () = assert!(std::mem::size_of::<ti_v6_key>() == 16);
const _: () = assert!(std::mem::size_of::<ti_lpm_v4_key>() == 8);
const _: () = assert!(std::mem::size_of::<ti_lpm_v6_key>() == 20);
const _: () = assert!(std::mem::size_of::<ti_settings>() == 8);
const _: () = assert!(std::mem::size_of::<ips_block>() == 16);
const _: () = assert!(std::mem::size_of::<ips_settings>() == 8);
const _: () = assert!(std::mem::size_of::<ct_key>() == 40);
const _: () = assert!(std::mem::size_of::<ct_side>() == 32);
const _: () = assert!(std::mem::size_of::<ct_entry>() == 96);
const _: () = assert!(std::mem::size_of::<ct_settings>() == 8 * CT_STATE_COUNT + 8);
const _: () = assert!(std::mem::size_of::<packet_event>() == 56);
const _: () = assert!(std::mem::size_of::<dns_query_event>() == 320);
const _: () = assert!(std::mem::size_of::<dns_blocked>() == 8);
const _: () = assert!(std::mem::size_of::<dns_settings>() == 8);
const _: () = assert!(std::mem::size_of::<dns_name>() == 256);
const _: () = assert!(std::mem::size_of::<scrub_settings>() == 8);
const _: () = assert!(std::mem::size_of::<lb_service_key>() == 20);
const _: () = assert!(std::mem::size_of::<lb_service>() == 8);
const _: () = assert!(std::mem::size_of::<lb_backend>() == 24);
const _: () = assert!(std::mem::size_of::<lb_reverse_key>() == 20);
const _: () = assert!(std::mem::size_of::<lb_service_stats>() == 24);
const _: () = assert!(std::mem::size_of::<rl_policy>() == 24);
const _: () = assert!(std::mem::size_of::<rl_match>() == 24);
const _: () = assert!(std::mem::size_of::<rl_key>() == 20);
const _: () = assert!(std::mem::size_of::<rl_bucket>() == 32);
const _: () = assert!(std::mem::size_of::<fw_lpm_v4_key>() == 12);
const _: () = assert!(std::mem::size_of::<fw_lpm_v6_key>() == 24);
const _: () = assert!(std::mem::size_of::<fw_exact_v4_key>() == 8);
const _: () = assert!(std::mem::size_of::<fw_exact_v6_key>() == 20);
const _: () = assert!(std::mem::size_of::<fw_rule_ref>() == 4);
const _: () = assert!(std::mem::size_of::<fw_settings>() == 32);
const _: () = assert!(std::mem::size_of::<fw_cls_v4_key>() == 8);
const _: () = assert!(std::mem::size_of::<fw_cls_v6_key>() == 20);
const _: () = assert!(std::mem::size_of::<fw_bitmap>() == 8 + 8 * BITMAP_WORDS);
const _: () = assert!(MAX_RULES_PER_FAMILY == BITMAP_WORDS * 64);

pub fn bytes_of<T: plain::Plain>(v: &T) -> &[u8] {
    // SAFETY: Plain types have no padding and no invalid bit patterns.
    unsafe { plain::as_bytes(v) }
}

/// Copies a record out of a byte slice; None if the slice is too short.
pub fn read<T: plain::Plain + Default>(bytes: &[u8]) -> Option<T> {
    let mut v = T::default();
    plain::copy_from_bytes(&mut v, bytes).ok()?;
    Some(v)
}
