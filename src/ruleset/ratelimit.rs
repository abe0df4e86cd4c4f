//! Compiles `ratelimit.policies` into xdp_ratelimit's maps: the policies by index, and per
//! family the prefixes they name, each carrying every policy that covers it, longest prefix
//! first (file order among equals), so the kernel takes the first whose protocol and port
//! match.
//!
//! How the configured rate holds on several CPUs: buckets are per CPU (no atomics). Each keeps
//! a count of the key's recent packets on that CPU (halved every 50 ms); a CPU reads the other
//! CPUs' counts (bpf_map_lookup_percpu_elem) and refills at the rate times its own share, and
//! holds that share of the burst. A flood pinned to one CPU gets the whole rate there, one
//! spread evenly over N CPUs gets rate/N on each, and a flow that moves from CPU to CPU (as a
//! single flow through veth does when its sender migrates) follows within a few half-lives.
//! Counting CPUs instead of packets would halve such a moving flow's rate.

use anyhow::{bail, Result};
use ipnet::IpNet;

use super::prefix::{fold_covering, Prefix};
use super::{Family, FAMILIES};
use crate::abi::{
    self, rl_action, rl_amp_port, rl_guard_key, rl_guards, rl_key_mode, rl_limits, rl_match,
    rl_policy,
};
use crate::config::{DdosConfig, RateAction, RateKey, RateLimitConfig};

const PER_PREFIX: usize = rl_limits::RL_POLICIES_PER_PREFIX.0 as usize;

#[derive(Debug, Clone, Default)]
pub struct CompiledRateLimit {
    pub policies: Vec<rl_policy>,
    pub ids: Vec<String>,
    /// [family]: prefix -> covering policies
    pub lpm: [Vec<(Prefix, rl_match)>; 2],
    /// the DDoS guards (`ddos`), same stage
    pub guards: rl_guards,
    /// UDP source port -> its amplification budget
    pub amp: Vec<(u16, rl_amp_port)>,
}

impl CompiledRateLimit {
    /// Adds the DDoS guards of `ddos` to the compiled policies.
    pub fn with_guards(mut self, ddos: &DdosConfig) -> Result<Self> {
        if ddos.amplification.len() > rl_guard_key::RL_MAX_AMP_PORTS.0 as usize {
            bail!(
                "{} amplification ports, the limit is {}",
                ddos.amplification.len(),
                rl_guard_key::RL_MAX_AMP_PORTS.0
            );
        }
        if let Some(icmp) = ddos.icmp {
            self.guards.icmp_rate_pps = icmp.rate;
            self.guards.icmp_burst = icmp.burst;
            self.guards.icmp_max_payload = icmp.max_payload;
        }
        self.guards.syn_threshold_pps = ddos.syn_threshold_pps.unwrap_or(0);
        self.amp = ddos
            .amplification
            .iter()
            .enumerate()
            .map(|(i, a)| {
                (
                    a.port,
                    rl_amp_port {
                        rate_pps: a.rate,
                        burst: a.burst,
                        index: i as u16,
                        pad: [0; 6],
                    },
                )
            })
            .collect();
        Ok(self)
    }

    /// Whether xdp_ratelimit has anything to do (else its chain slot stays empty).
    pub fn enabled(&self) -> bool {
        !self.policies.is_empty()
            || self.guards.icmp_rate_pps != 0
            || self.guards.syn_threshold_pps != 0
            || !self.amp.is_empty()
    }

    /// (rule_id rank, name) of every guard, for naming their events.
    pub fn guard_names(&self) -> Vec<(u16, String)> {
        let rank = |key: u32| (key & abi::event_rule::EVENT_RULE_RANK_MASK.0) as u16;
        let mut names = Vec::new();
        if self.guards.icmp_rate_pps != 0 {
            names.push((rank(rl_guard_key::RL_KEY_ICMP.0), "ddos-icmp".to_string()));
        }
        for (port, a) in &self.amp {
            names.push((
                rank(rl_guard_key::RL_KEY_AMP_BASE.0 + u32::from(a.index)),
                format!("ddos-amplification:{port}"),
            ));
        }
        names
    }
}

fn everything(family: Family) -> IpNet {
    match family {
        Family::V4 => "0.0.0.0/0".parse().expect("literal"),
        Family::V6 => "::/0".parse().expect("literal"),
    }
}

pub fn compile(rl: &RateLimitConfig) -> Result<CompiledRateLimit> {
    if rl.policies.len() > rl_limits::RL_MAX_POLICIES.0 as usize {
        bail!(
            "{} rate-limit policies, the limit is {}",
            rl.policies.len(),
            rl_limits::RL_MAX_POLICIES.0
        );
    }
    let mut out = CompiledRateLimit::default();
    for p in &rl.policies {
        let (port_match, lo, hi) = match p.dst_port {
            Some(r) => (1, r.lo, r.hi),
            None => (0, 0, 0),
        };
        out.policies.push(rl_policy {
            rate_pps: p.rate,
            burst: p.burst,
            dport_lo: lo,
            dport_hi: hi,
            proto: p.proto.map_or(0, |x| x.number()),
            port_match,
            action: match p.action {
                RateAction::Drop => rl_action::RL_ACTION_DROP.0 as u8,
                RateAction::PassAndLog => rl_action::RL_ACTION_PASS_LOG.0 as u8,
            },
            key_mode: match p.key {
                RateKey::Source => rl_key_mode::RL_KEY_SOURCE.0 as u8,
                RateKey::Policy => rl_key_mode::RL_KEY_POLICY.0 as u8,
            },
        });
        out.ids.push(p.id.clone());
    }
    for family in FAMILIES {
        let mut named: Vec<(Prefix, (u8, u16))> = Vec::new();
        for (idx, p) in rl.policies.iter().enumerate() {
            let nets: Vec<IpNet> = match &p.src {
                Some(m) => m.nets.clone(),
                None => vec![everything(family)],
            };
            named.extend(
                nets.iter()
                    .filter(|n| Family::of(n) == family)
                    .map(|n| (Prefix::of(n), (n.prefix_len(), idx as u16))),
            );
        }
        for (prefix, mut covering) in
            fold_covering(named, family.width(), Vec::new, |acc, v| acc.push(*v))
        {
            covering.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            covering.dedup_by_key(|c| c.1);
            if covering.len() > PER_PREFIX {
                bail!(
                    "{} rate-limit policies cover {}/{}, the limit is {PER_PREFIX}",
                    covering.len(),
                    match family {
                        Family::V4 => std::net::IpAddr::V4((prefix.addr as u32).into()),
                        Family::V6 => std::net::IpAddr::V6(prefix.addr.into()),
                    },
                    prefix.len
                );
            }
            let mut m = rl_match {
                count: covering.len() as u8,
                ..Default::default()
            };
            for (slot, (_, idx)) in m.policy.iter_mut().zip(&covering) {
                *slot = *idx;
            }
            out.lpm[family as usize].push((prefix, m));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    fn compiled(yaml: &str) -> CompiledRateLimit {
        let cfg = config::parse_str(yaml, Path::new("t.yaml")).unwrap();
        compile(&cfg.ratelimit).unwrap()
    }

    #[test]
    fn longest_prefix_first_then_file_order() {
        let c = compiled(
            "ratelimit:\n  policies:\n    - { id: all, rate: 100 }\n    - { id: net, src: 10.0.0.0/8, rate: 50, proto: udp, dst_port: 53 }\n    - { id: host, src: 10.1.2.3, rate: 5, key: policy, action: pass-and-log }\n",
        );
        assert_eq!(c.ids, ["all", "net", "host"]);
        assert_eq!(c.policies[0].burst, 100, "burst defaults to the rate");
        assert_eq!((c.policies[1].proto, c.policies[1].port_match), (17, 1));
        assert_eq!(c.policies[2].key_mode, rl_key_mode::RL_KEY_POLICY.0 as u8);
        let v4: std::collections::HashMap<String, Vec<u16>> = c.lpm[0]
            .iter()
            .map(|(p, m)| {
                (
                    format!("{}/{}", std::net::Ipv4Addr::from(p.addr as u32), p.len),
                    m.policy[..m.count as usize].to_vec(),
                )
            })
            .collect();
        assert_eq!(v4["0.0.0.0/0"], [0]);
        assert_eq!(v4["10.0.0.0/8"], [1, 0]);
        assert_eq!(v4["10.1.2.3/32"], [2, 1, 0]);
        assert_eq!(c.lpm[1].len(), 1, "only `all` covers IPv6");
    }

    #[test]
    fn too_many_covering_policies_is_an_error() {
        let mut yaml = String::from("ratelimit:\n  policies:\n");
        for i in 0..9 {
            yaml += &format!("    - {{ id: p{i}, src: 10.0.0.0/{}, rate: 10 }}\n", 8 + i);
        }
        let cfg = config::parse_str(&yaml, Path::new("t.yaml")).unwrap();
        let err = compile(&cfg.ratelimit).unwrap_err().to_string();
        assert!(
            err.contains("9 rate-limit policies cover 10.0.0.0/16"),
            "{err}"
        );
    }
}
