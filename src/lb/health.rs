//! Health checks of the backends: a TCP connect from this host at each service's interval,
//! with rise/fall hysteresis. Verdict changes go to the daemon, which rebuilds the tables.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{HealthCheck, LbConfig};

/// A health verdict that changed: (service id, backend, up).
pub type Verdict = (String, SocketAddr, bool);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: String,
    pub addr: SocketAddr,
    pub check: HealthCheck,
}

pub fn targets(cfg: &LbConfig) -> Vec<Target> {
    cfg.services
        .iter()
        .filter_map(|s| s.health.map(|h| (s, h)))
        .flat_map(|(s, check)| {
            s.backends.iter().map(move |b| Target {
                service: s.id.clone(),
                addr: b.addr,
                check,
            })
        })
        .collect()
}

struct Tracked {
    next: Instant,
    up: bool,
    /// successes (when down) or failures (when up) in a row
    streak: u32,
}

/// Whether a connect within `timeout` succeeds.
pub fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout).is_ok()
}

/// Starts the checker; `targets` may be replaced while it runs (a reload, `lb add|del`).
pub fn spawn(
    targets: Arc<Mutex<Vec<Target>>>,
    report: impl Fn(Verdict) + Send + 'static,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("lb-health".into())
        .spawn(move || {
            // Backends start up: a new service takes traffic at once, and `fall` failures take
            // a dead one out.
            let mut state: HashMap<(String, SocketAddr), Tracked> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let current = targets.lock().unwrap_or_else(|p| p.into_inner()).clone();
                state.retain(|k, _| current.iter().any(|t| (&t.service, t.addr) == (&k.0, k.1)));
                for t in &current {
                    let key = (t.service.clone(), t.addr);
                    let tr = state.entry(key).or_insert(Tracked {
                        next: now,
                        up: true,
                        streak: 0,
                    });
                    if tr.next > now {
                        continue;
                    }
                    tr.next = now + t.check.interval;
                    let ok = probe(t.addr, t.check.timeout);
                    if ok == tr.up {
                        tr.streak = 0;
                        continue;
                    }
                    tr.streak += 1;
                    let needed = if tr.up { t.check.fall } else { t.check.rise };
                    if tr.streak >= needed {
                        tr.up = ok;
                        tr.streak = 0;
                        report((t.service.clone(), t.addr, ok));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
}
