//! The binary's interface: help and version, `check` on valid and invalid configs (exit codes
//! and FILE:LINE:COL: messages), `status` on a pin root with nothing behind it, `run`'s early
//! refusals, and clap's usage errors. Exit codes: 0 ok, 1 negative answer, 2 error.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_ebpfsentinel");

/// Marks the position an error must point at; removed before the file is written.
const HERE: char = '»';

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn ebpfsentinel<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Outcome {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("spawning the binary");
    Outcome {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A path under the temp dir unique to this process and call; removed (file or directory)
/// on drop.
struct Temp(PathBuf);

impl Temp {
    fn path(tag: &str) -> Temp {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Temp(
            std::env::temp_dir().join(format!("ebpfsentinel-cli-{}-{n}-{tag}", std::process::id())),
        )
    }

    fn file(tag: &str, text: &str) -> Temp {
        let t = Temp::path(&format!("{tag}.yaml"));
        std::fs::write(&t.0, text).expect("writing a temp config");
        t
    }

    fn dir(tag: &str) -> Temp {
        let t = Temp::path(tag);
        std::fs::create_dir(&t.0).expect("creating a temp dir");
        t
    }

    fn show(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

const VALID: &str = r#"interfaces: [lo]
firewall:
  default_policy: pass
  allowlist: ["@mon"]
  aliases:
    mon: { entries: [203.0.113.250, "2001:db8::250"] }
  rules:
    - { id: drop-net, action: drop, src: 192.0.2.0/24 }
    - { id: no-telnet, action: drop, proto: tcp, dst_port: 23, log: true }
    - { id: lan-dns, action: pass, proto: udp, src: 10.0.0.0/8, dst_port: "53", priority: 10 }
    - { id: v6-net, action: drop, src: "2001:db8:bad::/48" }
"#;

// ---- help and version -----------------------------------------------------------------------

#[test]
fn top_level_help_lists_every_subcommand() {
    for flag in ["--help", "-h"] {
        let out = ebpfsentinel(&[flag]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("XDP firewall"), "{out:?}");
        assert!(
            out.stdout.contains("Usage: ebpfsentinel <COMMAND>"),
            "{out:?}"
        );
        for sub in ["run", "check", "status", "bench"] {
            assert!(
                out.stdout.lines().any(|l| l.trim_start().starts_with(sub)),
                "{sub} missing from {flag}: {out:?}"
            );
        }
    }
    let out = ebpfsentinel(&["--help"]);
    assert!(out.stdout.contains("Exit codes: 0 ok, 1"), "{out:?}");
}

#[test]
fn subcommand_help_states_each_purpose() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["run", "--help"],
            &[
                "Run the dataplane in the foreground",
                "--iface",
                "--pin-root",
                "--config",
            ],
        ),
        (
            &["check", "--help"],
            &["Validate a config file", "FILE:LINE:COLUMN", "--config"],
        ),
        (
            &["status", "--help"],
            &["Show what enforces traffic", "--pin-root", "--json"],
        ),
        (&["reload", "--help"], &["re-read its config", "--pin-root"]),
        (&["events", "--help"], &["JSON lines", "--follow"]),
        (
            &["down", "--help"],
            &["Remove the enforcement", "--pin-root"],
        ),
        (&["stats", "--help"], &["pinned maps", "--json"]),
        (
            &["bench", "--help"],
            &[
                "Measure the per-packet cost",
                "BPF_PROG_TEST_RUN",
                "firewall",
                "reload",
                "events",
            ],
        ),
        (
            &["bench", "firewall", "--help"],
            &["xdp_firewall", "--max-cidrs"],
        ),
        (&["help", "check"], &["Validate a config file"]),
    ];
    for (args, needles) in cases {
        let out = ebpfsentinel(args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        for needle in *needles {
            assert!(
                out.stdout.contains(needle),
                "{args:?} lacks {needle:?}: {out:?}"
            );
        }
    }
}

#[test]
fn version_prints_name_and_version() {
    for flag in ["--version", "-V"] {
        let out = ebpfsentinel(&[flag]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(
            out.stdout.trim(),
            format!("ebpfsentinel {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

// ---- usage errors ---------------------------------------------------------------------------

#[test]
fn usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["bogus"], "unrecognized subcommand 'bogus'"),
        (&["--bogus"], "unexpected argument '--bogus'"),
        (&["check", "--bogus"], "unexpected argument '--bogus'"),
        (&["status", "--pin-root"], "a value is required"),
        (&["check", "extra-positional"], "unexpected argument"),
        (&["bench", "nothing"], "unrecognized subcommand 'nothing'"),
        (
            &["bench", "firewall", "--repeat", "many"],
            "invalid value 'many'",
        ),
        (&[], "Usage: ebpfsentinel <COMMAND>"),
    ];
    for (args, needle) in cases {
        let out = ebpfsentinel(args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains(needle),
            "{args:?} lacks {needle:?}: {out:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}

// ---- check ----------------------------------------------------------------------------------

#[test]
fn check_accepts_a_valid_config_with_a_one_line_summary() {
    let cfg = Temp::file("valid", VALID);
    for flag in ["-c", "--config"] {
        let out = ebpfsentinel(&["check", flag, &cfg.show()]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stderr.is_empty(), "{out:?}");
        assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
        let line = out.stdout.trim_end();
        assert!(line.starts_with(&format!("{}: ok: ", cfg.show())), "{line}");
        for part in [
            "4 rules",
            "2 CIDR-only with 2 prefixes",
            "2 IPv4 and 1 IPv6 general",
            "1 aliases",
            "2 allowlist prefixes",
            "4 match sets",
        ] {
            assert!(line.contains(part), "{line:?} lacks {part:?}");
        }
    }
}

/// Strips the `»` marker; returns the text and the marker's 1-based line and column.
fn strip_marker(marked: &str) -> (String, usize, usize) {
    let offset = marked.find(HERE).expect("the text has a » marker");
    let before = &marked[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |nl| nl + 1)..]
        .chars()
        .count()
        + 1;
    (marked.replacen(HERE, "", 1), line, col)
}

/// 1-based line and column of the first occurrence of `needle`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let marked = text.replacen(needle, &format!("{HERE}{needle}"), 1);
    let (_, line, col) = strip_marker(&marked);
    (line, col)
}

fn rule(rule: &str) -> String {
    format!("firewall:\n  rules:\n    - {rule}\n")
}

#[test]
fn check_reports_each_invalid_config_at_file_line_col() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown-key",
            "interfaces: [lo]\nfirewall:\n  »policy: drop\n".to_owned(),
            "unknown key `policy` in firewall; allowed keys: mode, default_policy",
        ),
        (
            "unknown-rule-key",
            rule("{ id: a, action: drop, »port: 80 }"),
            "unknown key `port` in a rule",
        ),
        (
            "bad-cidr",
            rule("{ id: a, action: drop, src: »10.0.0.0/33 }"),
            "invalid CIDR `10.0.0.0/33`",
        ),
        (
            "host-bits",
            rule("{ id: a, action: drop, dst: [192.0.2.0/24, »10.0.0.1/8] }"),
            "`10.0.0.1/8` has host bits set; did you mean `10.0.0.0/8`?",
        ),
        (
            "duplicate-id",
            "firewall:\n  rules:\n    - { id: a, action: drop }\n    - { id: »a, action: pass }\n"
                .to_owned(),
            "duplicate rule id `a` (first defined at line 3, column 13)",
        ),
        (
            "missing-alias",
            "firewall:\n  aliases:\n    known: { entries: [10.0.0.0/8] }\n  rules:\n    - { id: a, action: drop, src: »\"@nope\" }\n"
                .to_owned(),
            "unknown alias `@nope` (defined: known)",
        ),
        (
            "bad-port",
            rule("{ id: a, action: drop, proto: tcp, dst_port: »70000 }"),
            "expected a port 0..=65535 or a range \"N-M\" with N <= M",
        ),
        (
            "reversed-range",
            rule("{ id: a, action: drop, proto: udp, src_port: »\"90-80\" }"),
            "expected a port 0..=65535 or a range",
        ),
    ];
    for (tag, marked, reason) in cases {
        let (text, line, col) = strip_marker(&marked);
        let cfg = Temp::file(tag, &text);
        let out = ebpfsentinel(&["check", "-c", &cfg.show()]);
        assert_eq!(out.code, 2, "{tag}: {out:?}");
        let expected = format!("{}:{line}:{col}: {reason}", cfg.show());
        assert!(
            out.stderr.contains(&expected),
            "{tag}: expected {expected:?} in {out:?}"
        );
        assert!(out.stdout.is_empty(), "{tag}: {out:?}");
    }
}

#[test]
fn check_reports_every_error_in_reading_order() {
    let text = "interfaces: [lo]\nbogus: 1\nfirewall:\n  rules:\n    - { id: a, action: drop, src: 10.0.0.0/33 }\n    - { id: b, action: drop, dst_port: 70000 }\n";
    let cfg = Temp::file("several", text);
    let out = ebpfsentinel(&["check", "-c", &cfg.show()]);
    assert_eq!(out.code, 2, "{out:?}");
    let path = cfg.show();
    let at: Vec<usize> = [
        ("bogus", "unknown key `bogus`"),
        ("10.0.0.0/33", "invalid CIDR"),
        ("70000", "expected a port"),
    ]
    .iter()
    .map(|(spot, reason)| {
        let (line, col) = position(text, spot);
        format!("{path}:{line}:{col}: {reason}")
    })
    .collect::<Vec<_>>()
    .iter()
    .map(|needle| {
        out.stderr
            .find(needle.as_str())
            .unwrap_or_else(|| panic!("{needle:?} missing: {out:?}"))
    })
    .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{out:?}");
}

#[test]
fn check_on_a_missing_file_names_the_path() {
    let missing = Temp::path("does-not-exist.yaml");
    let out = ebpfsentinel(&["check", "-c", &missing.show()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("{}: cannot read config", missing.show())),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
}

fn general_v4_rules(n: usize) -> String {
    let mut text = String::from("firewall:\n  rules:\n");
    for i in 0..n {
        text.push_str(&format!(
            "    - {{ id: r{i}, action: drop, proto: tcp, src: 10.0.0.0/8, dst_port: {} }}\n",
            i % 1000
        ));
    }
    text
}

#[test]
fn check_refuses_a_ruleset_that_does_not_fit() {
    let fits = Temp::file("fits", &general_v4_rules(4096));
    let out = ebpfsentinel(&["check", "-c", &fits.show()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("4096 rules") && out.stdout.contains("4096 IPv4 and 0 IPv6 general"),
        "{out:?}"
    );

    let too_many = Temp::file("too-many", &general_v4_rules(4097));
    let out = ebpfsentinel(&["check", "-c", &too_many.show()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "{}: ruleset does not fit: 4097 general IPv4 rules",
            too_many.show()
        )),
        "{out:?}"
    );
    assert!(out.stderr.contains("the limit is 4096"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

// ---- status ---------------------------------------------------------------------------------

#[test]
fn status_on_an_empty_pin_root_is_a_negative_answer() {
    let root = Temp::dir("status-pins");
    let out = ebpfsentinel(&["status", "--pin-root", &root.show()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("not running"), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("pin root: {} (nothing pinned)", root.show())),
        "{out:?}"
    );
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn status_json_is_valid_json() {
    let root = Temp::dir("status-json-pins");
    let out = ebpfsentinel(&["status", "--json", "--pin-root", &root.show()]);
    assert_eq!(out.code, 1, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out:?}"));
    assert!(v["daemon_pid"].is_null(), "{v}");
    assert_eq!(v["pinned"], serde_json::Value::Bool(false), "{v}");
    assert_eq!(v["pin_root"].as_str(), Some(root.show().as_str()), "{v}");
    assert!(v["generation"].is_null(), "{v}");
    // Nothing runs, so no rules (a count or a per-rule list, depending on the version).
    assert!(
        v["rules"] == serde_json::json!(0) || v["rules"] == serde_json::json!([]),
        "{v}"
    );
    assert_eq!(v["interfaces"], serde_json::json!([]), "{v}");
    assert!(v["counters"].as_array().is_some_and(Vec::is_empty), "{v}");
}

// ---- run ------------------------------------------------------------------------------------

#[test]
fn run_without_an_interface_refuses() {
    let cfg = Temp::file("no-iface", "firewall:\n  default_policy: pass\n");
    let out = ebpfsentinel(&["run", "-c", &cfg.show()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "no interface to attach to: set `interfaces` in {} or pass --iface",
            cfg.show()
        )),
        "{out:?}"
    );
    assert!(!out.stderr.contains("ready"), "{out:?}");
}

#[test]
fn run_refuses_invalid_and_missing_configs() {
    let (text, line, col) = strip_marker(&rule("{ id: a, action: »deny }"));
    let cfg = Temp::file("run-invalid", &text);
    let out = ebpfsentinel(&["run", "--iface", "lo", "-c", &cfg.show()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "{}:{line}:{col}: expected one of pass | drop",
            cfg.show()
        )),
        "{out:?}"
    );

    let missing = Temp::path("run-missing.yaml");
    let out = ebpfsentinel(&["run", "--iface", "lo", "-c", &missing.show()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains(&missing.show()), "{out:?}");
}

#[test]
fn run_refuses_a_pin_root_that_is_not_on_a_bpffs() {
    if !common::privileged("run_refuses_a_pin_root_that_is_not_on_a_bpffs") {
        return;
    }
    let cfg = Temp::file("run-valid", VALID);
    let root = Temp::dir("not-bpffs");
    let lock = ebpfsentinel::state::state_path(&root.0).with_extension("lock");
    let out = ebpfsentinel(&[
        "run",
        "--pin-root",
        &root.show(),
        "--iface",
        "lo",
        "-c",
        &cfg.show(),
    ]);
    let _ = std::fs::remove_file(&lock);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("pin root {} is not on a bpffs", root.show())),
        "{out:?}"
    );
    assert!(!out.stderr.contains("ready"), "{out:?}");
    assert!(
        std::fs::read_dir(&root.0)
            .expect("pin root")
            .next()
            .is_none(),
        "nothing may be pinned under a refused pin root"
    );
    let state = ebpfsentinel::state::state_path(&root.0);
    assert!(!state.exists(), "{} left behind", state.display());
}
