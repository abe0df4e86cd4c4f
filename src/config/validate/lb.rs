//! The `loadbalancer`, `mirror` and `cpumap` sections.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::super::yaml::{Node, Pos, Scalar, Value};
use super::super::{
    is_prime, CpumapConfig, HealthCheck, LbBackend, LbConfig, LbService, MirrorConfig, Proto,
    MAX_CPUMAP_CPUS, MAX_CPUMAP_QUEUE, MAX_HEALTH_THRESHOLD, MAX_LB_BACKENDS, MAX_LB_SERVICES,
    MAX_LB_TABLE_SIZE, MAX_LB_WEIGHT,
};
use super::Checker;

const LB_KEYS: &[&str] = &["table_size", "services"];
const SERVICE_KEYS: &[&str] = &["id", "vip", "port", "proto", "backends", "health"];
const BACKEND_KEYS: &[&str] = &["addr", "port", "weight"];
const HEALTH_KEYS: &[&str] = &["tcp_connect", "interval", "timeout", "rise", "fall"];
const MIRROR_KEYS: &[&str] = &["to", "match"];
const MIRROR_MATCH_KEYS: &[&str] = &["services"];
const CPUMAP_KEYS: &[&str] = &["cpus", "queue_size"];
const LB_PROTOS: &[(&str, Proto)] = &[("tcp", Proto::Tcp), ("udp", Proto::Udp)];
const MIN_TABLE_SIZE: u32 = 7;
const MAX_HEALTH_INTERVAL: Duration = Duration::from_secs(3600);

impl Checker<'_> {
    pub(super) fn loadbalancer(&mut self, node: &Node) -> LbConfig {
        let mut config = LbConfig::default();
        let Some(fields) = self.fields(node, "loadbalancer", LB_KEYS) else {
            return config;
        };
        if let Some(n) = fields.get("table_size") {
            let expected = format!("a prime in {MIN_TABLE_SIZE}..={MAX_LB_TABLE_SIZE}");
            if let Some(size) = self.typed(n, &expected, |scalar| match scalar {
                Scalar::Int(v) => u32::try_from(v)
                    .ok()
                    .filter(|v| (MIN_TABLE_SIZE..=MAX_LB_TABLE_SIZE).contains(v) && is_prime(*v)),
                _ => None,
            }) {
                config.table_size = size;
            }
        }
        let Some(list) = fields.section("services") else {
            return config;
        };
        let Value::Seq(items) = &list.value else {
            self.mismatch(list, "a list of services");
            return config;
        };
        if items.len() > MAX_LB_SERVICES {
            self.error(
                list.pos,
                format!(
                    "{} services exceed the limit of {MAX_LB_SERVICES}",
                    items.len()
                ),
            );
        }
        let mut ids = HashMap::new();
        let mut keys: HashMap<(IpAddr, u16, u8), Pos> = HashMap::new();
        let mut owners: HashMap<(SocketAddr, u8), (Pos, String)> = HashMap::new();
        for item in items {
            let Some(svc) = self.lb_service(item, &mut ids) else {
                continue;
            };
            let proto = svc.proto.number();
            if let Some(first) = keys.get(&(svc.vip, svc.port, proto)) {
                self.error(
                    item.pos,
                    format!(
                        "service `{}` has the VIP {}:{}/{} of the service at line {}",
                        svc.id, svc.vip, svc.port, svc.proto, first.line
                    ),
                );
                continue;
            }
            keys.insert((svc.vip, svc.port, proto), item.pos);
            let mut clash = false;
            for b in &svc.backends {
                match owners.get(&(b.addr, proto)) {
                    Some((_, other)) if *other != svc.id => {
                        self.error(
                            item.pos,
                            format!(
                                "backend {} of service `{}` also serves `{other}`: replies are mapped back to the VIP by backend address and port, so each may serve one service",
                                b.addr, svc.id
                            ),
                        );
                        clash = true;
                    }
                    _ => {
                        owners.insert((b.addr, proto), (item.pos, svc.id.clone()));
                    }
                }
            }
            if svc.backends.len() as u32 >= config.table_size {
                self.error(
                    item.pos,
                    format!(
                        "service `{}` has {} backends, more than loadbalancer.table_size ({}) can spread",
                        svc.id,
                        svc.backends.len(),
                        config.table_size
                    ),
                );
                clash = true;
            }
            if !clash {
                config.services.push(svc);
            }
        }
        config
    }

    fn lb_service<'n>(
        &mut self,
        node: &'n Node,
        ids: &mut HashMap<&'n str, Pos>,
    ) -> Option<LbService> {
        let errors_before = self.errors.len();
        let fields = self.fields(node, "a service", SERVICE_KEYS)?;
        let id = self
            .required(fields, "id", node)
            .and_then(|n| self.identifier(n, ids, "service id"));
        let vip = self
            .required(fields, "vip", node)
            .and_then(|n| self.ip_addr(n));
        let port = self
            .required(fields, "port", node)
            .and_then(|n| self.lb_port(n));
        let proto = match fields.get("proto") {
            Some(n) => self.keyword(n, LB_PROTOS),
            None => Some(Proto::Tcp),
        };
        let mut backends = Vec::new();
        if let Some(list) = self.required(fields, "backends", node) {
            match &list.value {
                Value::Seq(items) => {
                    if items.is_empty() {
                        self.error(list.pos, "a service needs at least one backend");
                    }
                    if items.len() > MAX_LB_BACKENDS {
                        self.error(
                            list.pos,
                            format!(
                                "{} backends exceed the limit of {MAX_LB_BACKENDS} per service",
                                items.len()
                            ),
                        );
                    }
                    let mut seen: HashMap<SocketAddr, Pos> = HashMap::new();
                    for item in items {
                        let Some(b) = self.lb_backend(item) else {
                            continue;
                        };
                        if let Some(first) = seen.get(&b.addr) {
                            self.error(
                                item.pos,
                                format!(
                                    "backend {} is listed twice (first at line {})",
                                    b.addr, first.line
                                ),
                            );
                            continue;
                        }
                        if let Some(vip) = vip {
                            if vip.is_ipv4() != b.addr.is_ipv4() {
                                self.error(
                                    item.pos,
                                    format!(
                                        "backend {} is not of the VIP's address family ({vip})",
                                        b.addr
                                    ),
                                );
                                continue;
                            }
                        }
                        seen.insert(b.addr, item.pos);
                        backends.push(b);
                    }
                }
                _ => self.mismatch(list, "a list of backends"),
            }
        }
        let health = fields.section("health").and_then(|n| self.health(n));
        if self.errors.len() != errors_before {
            return None;
        }
        Some(LbService {
            id: id?,
            location: self.location(node.pos),
            vip: vip?,
            port: port?,
            proto: proto?,
            backends,
            health,
        })
    }

    fn lb_backend(&mut self, node: &Node) -> Option<LbBackend> {
        let fields = self.fields(node, "a backend", BACKEND_KEYS)?;
        let addr = self
            .required(fields, "addr", node)
            .and_then(|n| self.ip_addr(n));
        let port = self
            .required(fields, "port", node)
            .and_then(|n| self.lb_port(n));
        let weight = match fields.get("weight") {
            Some(n) => {
                let expected = format!("a weight in 1..={MAX_LB_WEIGHT}");
                self.typed(n, &expected, |scalar| match scalar {
                    Scalar::Int(v) => u32::try_from(v)
                        .ok()
                        .filter(|v| (1..=MAX_LB_WEIGHT).contains(v)),
                    _ => None,
                })
            }
            None => Some(1),
        };
        Some(LbBackend {
            addr: SocketAddr::new(addr?, port?),
            weight: weight?,
        })
    }

    fn health(&mut self, node: &Node) -> Option<HealthCheck> {
        let fields = self.fields(node, "health", HEALTH_KEYS)?;
        let mut check = HealthCheck {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 2,
        };
        if let Some(n) = fields.get("tcp_connect") {
            if self.boolean(n) == Some(false) {
                self.error(
                    n.pos,
                    "tcp_connect: false leaves no check to run (TCP connect is the only kind); remove `health` to keep every backend up",
                );
                return None;
            }
        }
        for (key, slot) in [
            ("interval", &mut check.interval),
            ("timeout", &mut check.timeout),
        ] {
            if let Some(n) = fields.get(key) {
                let name = format!("health.{key}");
                *slot = self.duration_in(n, &name, Duration::from_secs(1), MAX_HEALTH_INTERVAL)?;
            }
        }
        for (key, slot) in [("rise", &mut check.rise), ("fall", &mut check.fall)] {
            if let Some(n) = fields.get(key) {
                let expected = format!("an integer in 1..={MAX_HEALTH_THRESHOLD}");
                *slot = self.typed(n, &expected, |scalar| match scalar {
                    Scalar::Int(v) => u32::try_from(v)
                        .ok()
                        .filter(|v| (1..=MAX_HEALTH_THRESHOLD).contains(v)),
                    _ => None,
                })?;
            }
        }
        if check.timeout > check.interval {
            if let Some(n) = fields.get("timeout") {
                self.error(n.pos, "health.timeout must not exceed health.interval");
                return None;
            }
            check.timeout = check.interval;
        }
        Some(check)
    }

    pub(super) fn mirror(&mut self, node: &Node) -> Option<MirrorConfig> {
        let fields = self.fields(node, "mirror", MIRROR_KEYS)?;
        let to = self.required(fields, "to", node)?;
        let name = self.string(to)?;
        if name.is_empty() || name.len() > 15 || name.contains('/') {
            self.error(
                to.pos,
                format!("interface name `{name}` must be 1 to 15 bytes without `/`"),
            );
            return None;
        }
        let services = match fields.get("match") {
            None => None,
            Some(m) => {
                let f = self.fields(m, "mirror.match", MIRROR_MATCH_KEYS)?;
                let list = self.required(f, "services", m)?;
                Some(
                    self.strings(list)
                        .into_iter()
                        .map(|(_, s)| s.to_owned())
                        .collect(),
                )
            }
        };
        Some(MirrorConfig {
            to: name.to_owned(),
            services,
        })
    }

    /// `mirror.match.services` must name services of `loadbalancer`.
    pub(super) fn mirror_services_exist(&mut self, node: &Node, lb: &LbConfig) {
        let Some(list) = map_get(node, "match").and_then(|m| map_get(m, "services")) else {
            return;
        };
        for (pos, id) in self.strings(list) {
            if !lb.services.iter().any(|s| s.id == id) {
                self.error(
                    pos,
                    format!("mirror.match names no service `{id}` of loadbalancer"),
                );
            }
        }
    }

    pub(super) fn cpumap(&mut self, node: &Node) -> Option<CpumapConfig> {
        let fields = self.fields(node, "cpumap", CPUMAP_KEYS)?;
        let queue_size = match fields.get("queue_size") {
            Some(n) => {
                let expected = format!("a queue size in 1..={MAX_CPUMAP_QUEUE}");
                self.typed(n, &expected, |scalar| match scalar {
                    Scalar::Int(v) => u32::try_from(v)
                        .ok()
                        .filter(|v| (1..=MAX_CPUMAP_QUEUE).contains(v)),
                    _ => None,
                })?
            }
            None => 2048,
        };
        let cpus = match fields.get("cpus") {
            None => None,
            Some(list) => {
                let Value::Seq(items) = &list.value else {
                    self.mismatch(list, "a list of CPU numbers");
                    return None;
                };
                if items.is_empty() {
                    self.error(list.pos, "cpumap.cpus must name at least one CPU");
                    return None;
                }
                let mut cpus = Vec::new();
                for item in items {
                    let expected = format!("a CPU number in 0..{MAX_CPUMAP_CPUS}");
                    let cpu = self.typed(item, &expected, |scalar| match scalar {
                        Scalar::Int(v) => u32::try_from(v).ok().filter(|v| *v < MAX_CPUMAP_CPUS),
                        _ => None,
                    })?;
                    if cpus.contains(&cpu) {
                        self.error(item.pos, format!("CPU {cpu} is listed twice"));
                        return None;
                    }
                    cpus.push(cpu);
                }
                Some(cpus)
            }
        };
        Some(CpumapConfig { cpus, queue_size })
    }

    fn ip_addr(&mut self, node: &Node) -> Option<IpAddr> {
        self.typed(node, "an IPv4 or IPv6 address", |scalar| match scalar {
            Scalar::Str(text) => text.parse().ok(),
            _ => None,
        })
    }

    fn lb_port(&mut self, node: &Node) -> Option<u16> {
        self.typed(node, "a port in 1..=65535", |scalar| match scalar {
            Scalar::Int(v) => u16::try_from(v).ok().filter(|v| *v > 0),
            _ => None,
        })
    }
}

fn map_get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.key_text() == key)
            .map(|(_, v)| v),
        _ => None,
    }
}
