//! `ebpfsentinel run` as the lab's router process: started through `ip netns exec` with a pin
//! root on a bpffs of the test's own, stopped (and the bpffs unmounted) even when an
//! assertion fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::netns::Netns;

pub const BIN: &str = env!("CARGO_BIN_EXE_ebpfsentinel");

/// A private bpffs mounted under the temp dir, with room for config files beside it.
pub struct Scratch {
    pub dir: PathBuf,
    pub bpffs: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("es-{tag}-{}", std::process::id()));
        let bpffs = dir.join("bpf");
        std::fs::create_dir_all(&bpffs).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&bpffs)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a bpffs on {}", bpffs.display());
        Scratch { dir, bpffs }
    }

    pub fn pin_root(&self) -> PathBuf {
        self.bpffs.join("ebpfsentinel")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.bpffs).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Daemon {
    pub child: Option<Child>,
    pub ready: String,
    /// stdout lines (events when no events.path is configured)
    pub stdout: mpsc::Receiver<String>,
    /// stderr lines after the ready line
    pub stderr: mpsc::Receiver<String>,
}

impl Daemon {
    /// Starts `run -c config --pin-root pin_root extra...` in `ns` and waits for `ready`.
    pub fn start(ns: &Netns, config: &Path, pin_root: &Path, extra: &[&str]) -> Daemon {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, BIN, "run", "-c"])
            .arg(config)
            .arg("--pin-root")
            .arg(pin_root)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning ebpfsentinel run");
        let (err_tx, err_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("daemon: {line}");
                let _ = err_tx.send(line);
            }
        });
        let (out_tx, out_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_tx.send(line);
            }
        });
        let mut d = Daemon {
            child: Some(child),
            ready: String::new(),
            stdout: out_rx,
            stderr: err_rx,
        };
        loop {
            match d.stderr.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains("ready") => {
                    d.ready = line;
                    return d;
                }
                Ok(_) => continue,
                Err(_) => panic!("the daemon never printed its ready line"),
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with the pid of our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the process to end; its exit status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.take().expect("running").wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the CLI from the test process (outside any lab namespace).
pub fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running ebpfsentinel")
}

/// Reads the exporter from inside the router's namespace (it listens on its loopback).
pub fn scrape(router: &Netns) -> String {
    use std::io::{Read, Write};
    router.run(|| {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9669").expect("metrics listener");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    })
}

pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<u64> {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Polls `f` every 100 ms until it holds; fails the test after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The JSON a successful CLI command prints.
pub fn cli_json(args: &[&str]) -> serde_json::Value {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}
