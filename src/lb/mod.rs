//! The load balancer's userspace half: which backends of each service take traffic (health
//! checks, drains, `lb add|del`), and the Maglev tables built from them.

pub mod health;
pub mod maglev;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use anyhow::{bail, Result};

use crate::config::{LbBackend, LbConfig, LbService};

/// Why a configured backend takes no new flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    Up,
    /// the health check failed `fall` times in a row
    Down,
    /// taken out by `lb drain`
    Drained,
}

impl BackendState {
    pub fn name(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Down => "down",
            BackendState::Drained => "drained",
        }
    }
}

/// One service as the kernel gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub id: String,
    pub vip: std::net::IpAddr,
    pub port: u16,
    pub proto: u8,
    pub table_size: u32,
    /// every configured backend and whether it takes flows
    pub backends: Vec<(LbBackend, bool)>,
}

/// The services in force on the running system: the config's, changed by `lb` commands
/// until the next reload, and the health and drain state of their backends.
#[derive(Debug, Clone, Default)]
pub struct LbState {
    pub config: LbConfig,
    /// (service id, backend) the health checks found down
    pub down: BTreeSet<(String, SocketAddr)>,
    pub drained: BTreeSet<(String, SocketAddr)>,
}

impl LbState {
    pub fn new(config: LbConfig) -> LbState {
        LbState {
            config,
            ..Default::default()
        }
    }

    /// A reload: the new services, with what is known of backends that stay.
    pub fn replace(&mut self, config: LbConfig) {
        let keep = |(svc, addr): &(String, SocketAddr)| {
            config
                .services
                .iter()
                .any(|s| &s.id == svc && s.backends.iter().any(|b| &b.addr == addr))
        };
        self.down.retain(keep);
        self.drained.retain(keep);
        self.config = config;
    }

    pub fn state(&self, svc: &str, addr: SocketAddr) -> BackendState {
        let key = (svc.to_string(), addr);
        if self.drained.contains(&key) {
            BackendState::Drained
        } else if self.down.contains(&key) {
            BackendState::Down
        } else {
            BackendState::Up
        }
    }

    pub fn views(&self) -> Vec<ServiceView> {
        self.config
            .services
            .iter()
            .map(|s| ServiceView {
                id: s.id.clone(),
                vip: s.vip,
                port: s.port,
                proto: s.proto.number(),
                table_size: self.config.table_size,
                backends: s
                    .backends
                    .iter()
                    .map(|b| (*b, self.state(&s.id, b.addr) == BackendState::Up))
                    .collect(),
            })
            .collect()
    }

    fn service_mut(&mut self, id: &str) -> Result<&mut LbService> {
        match self.config.services.iter_mut().find(|s| s.id == id) {
            Some(s) => Ok(s),
            None => bail!("no service `{id}`"),
        }
    }

    /// Adds a backend to a service, or changes its weight.
    pub fn add_backend(&mut self, svc: &str, backend: LbBackend) -> Result<()> {
        let proto = self.service_mut(svc)?.proto;
        if let Some(other) = self.config.services.iter().find(|s| {
            s.id != svc && s.proto == proto && s.backends.iter().any(|b| b.addr == backend.addr)
        }) {
            bail!(
                "backend {} already serves `{}`: each backend address and port may serve one service",
                backend.addr,
                other.id
            );
        }
        let table_size = self.config.table_size;
        let s = self.service_mut(svc)?;
        if s.vip.is_ipv4() != backend.addr.is_ipv4() {
            bail!(
                "backend {} is not of the VIP's address family ({})",
                backend.addr,
                s.vip
            );
        }
        match s.backends.iter_mut().find(|b| b.addr == backend.addr) {
            Some(b) => b.weight = backend.weight,
            None => {
                if s.backends.len() >= crate::config::MAX_LB_BACKENDS
                    || s.backends.len() + 1 >= table_size as usize
                {
                    bail!("service `{svc}` has as many backends as it may");
                }
                s.backends.push(backend);
            }
        }
        self.drained.remove(&(svc.to_string(), backend.addr));
        Ok(())
    }

    /// Removes a backend: its flows move to the others, nobody else's do.
    pub fn del_backend(&mut self, svc: &str, addr: SocketAddr) -> Result<()> {
        let s = self.service_mut(svc)?;
        let before = s.backends.len();
        s.backends.retain(|b| b.addr != addr);
        if s.backends.len() == before {
            bail!("service `{svc}` has no backend {addr}");
        }
        let key = (svc.to_string(), addr);
        self.down.remove(&key);
        self.drained.remove(&key);
        Ok(())
    }

    /// Takes a backend out of the tables (or puts it back) while keeping it configured.
    pub fn drain(&mut self, svc: &str, addr: SocketAddr, drained: bool) -> Result<()> {
        let s = self.service_mut(svc)?;
        if !s.backends.iter().any(|b| b.addr == addr) {
            bail!("service `{svc}` has no backend {addr}");
        }
        let key = (svc.to_string(), addr);
        if drained {
            self.drained.insert(key);
        } else {
            self.drained.remove(&key);
        }
        Ok(())
    }

    /// Records a health verdict; true if it changed what the tables hold.
    pub fn set_health(&mut self, svc: &str, addr: SocketAddr, up: bool) -> bool {
        let key = (svc.to_string(), addr);
        if up {
            self.down.remove(&key)
        } else {
            self.down.insert(key)
        }
    }

    /// `lb list` rows.
    pub fn to_json(&self) -> serde_json::Value {
        let services: Vec<serde_json::Value> = self
            .config
            .services
            .iter()
            .map(|s| {
                let backends: Vec<serde_json::Value> = s
                    .backends
                    .iter()
                    .map(|b| {
                        serde_json::json!({
                            "addr": b.addr.ip().to_string(),
                            "port": b.addr.port(),
                            "weight": b.weight,
                            "state": self.state(&s.id, b.addr).name(),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "id": s.id,
                    "vip": s.vip.to_string(),
                    "port": s.port,
                    "proto": s.proto.to_string(),
                    "health": s.health.map(|h| serde_json::json!({
                        "interval_s": h.interval.as_secs(),
                        "timeout_s": h.timeout.as_secs(),
                        "rise": h.rise,
                        "fall": h.fall,
                    })),
                    "backends": backends,
                })
            })
            .collect();
        serde_json::Value::Array(services)
    }
}

/// A sysfs CPU list ("0-3,8,10-11").
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// The CPUs of `ifname`'s NUMA node, or every online CPU when the device has no node (veth,
/// single-node machines report -1).
pub fn numa_local_cpus(ifname: &str) -> Result<Vec<u32>> {
    let read = |path: String| std::fs::read_to_string(&path).map(|t| (path, t));
    let node = read(format!("/sys/class/net/{ifname}/device/numa_node"))
        .ok()
        .and_then(|(_, t)| t.trim().parse::<i32>().ok())
        .filter(|n| *n >= 0);
    let (path, text) = match node {
        Some(n) => read(format!("/sys/devices/system/node/node{n}/cpulist"))?,
        None => read("/sys/devices/system/cpu/online".to_string())?,
    };
    match parse_cpu_list(&text) {
        Some(cpus) if !cpus.is_empty() => Ok(cpus),
        _ => bail!("{path}: cannot read a CPU list from {text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("1"), Some(vec![1]));
        assert_eq!(parse_cpu_list("x"), None);
    }
}
