//! The .deb: `scripts/build-deb.sh --profile debug` builds it, then `dpkg-deb` shows what it
//! holds (files, modes, owners, control fields, conffiles, maintainer scripts), and the
//! package is unpacked into a temp dir, never onto the machine, to run its binary on its own
//! config. Also checks that the example config's commented-out examples stay valid.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::CommandFactory;

const BIN: &str = env!("CARGO_BIN_EXE_ebpfsentinel");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");

const CONFIG: &str = "etc/ebpfsentinel/config.yaml";
const UNIT: &str = "usr/lib/systemd/system/ebpfsentinel.service";
const MAN_DIR: &str = "usr/share/man/man8";

/// A directory under the temp dir, unique to this process and tag, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("ebpfsentinel-deb-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {:?}: {}\n--- stdout\n{}--- stderr\n{}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    String::from_utf8(run(program, args).stdout).expect("UTF-8 output")
}

fn require_dpkg_deb() {
    if let Err(e) = Command::new("dpkg-deb").arg("--version").output() {
        panic!(
            "dpkg-deb is needed to build and inspect the package and cannot be run ({e}); it \
             comes with dpkg (`apt-get install dpkg`), which every Debian system has"
        );
    }
}

/// `ebpfsentinel.8` plus `ebpfsentinel-SUB[-SUBSUB].8` for every visible (sub)command, as
/// `gen-docs` names them.
fn expected_man_pages() -> Vec<String> {
    fn walk(cmd: &clap::Command, prefix: &str, pages: &mut Vec<String>) {
        pages.push(format!("{prefix}.8.gz"));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, &format!("{prefix}-{}", sub.get_name()), pages);
        }
    }
    let mut pages = Vec::new();
    walk(
        &ebpfsentinel::cli::Cli::command(),
        "ebpfsentinel",
        &mut pages,
    );
    pages.sort();
    pages
}

/// Every regular file the package must hold and its mode, as `dpkg-deb --contents` prints it.
fn expected_files() -> BTreeMap<String, &'static str> {
    let mut files: BTreeMap<String, &'static str> = [
        ("usr/sbin/ebpfsentinel", "-rwxr-xr-x"),
        (UNIT, "-rw-r--r--"),
        (CONFIG, "-rw-r--r--"),
        (
            "usr/share/bash-completion/completions/ebpfsentinel",
            "-rw-r--r--",
        ),
        (
            "usr/share/zsh/vendor-completions/_ebpfsentinel",
            "-rw-r--r--",
        ),
        (
            "usr/share/fish/vendor_completions.d/ebpfsentinel.fish",
            "-rw-r--r--",
        ),
        ("usr/share/doc/ebpfsentinel/copyright", "-rw-r--r--"),
    ]
    .into_iter()
    .map(|(path, mode)| (path.to_owned(), mode))
    .collect();
    for page in expected_man_pages() {
        files.insert(format!("{MAN_DIR}/{page}"), "-rw-r--r--");
    }
    files
}

/// `Field: value` pairs of a control file (continuation lines appended with newlines).
fn control_fields(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.starts_with(' ') {
            let key = last.as_ref().expect("continuation line before any field");
            let value: &mut String = fields.get_mut(key).unwrap();
            value.push('\n');
            value.push_str(line);
        } else if let Some((key, value)) = line.split_once(':') {
            let previous = fields.insert(key.to_owned(), value.trim().to_owned());
            assert!(previous.is_none(), "duplicate control field {key}");
            last = Some(key.to_owned());
        } else {
            panic!("malformed control line `{line}`");
        }
    }
    fields
}

fn gunzip(path: &Path) -> String {
    stdout("gzip", &[OsStr::new("-dc"), path.as_os_str()])
}

#[test]
fn package_builds_holds_everything_and_its_binary_runs() {
    require_dpkg_deb();
    let tmp = TempDir::new("package");
    let out_dir = tmp.0.join("out");

    // ---- build ----
    let started = std::time::Instant::now();
    let build = Command::new("bash")
        .arg(Path::new(ROOT).join("scripts/build-deb.sh"))
        .args(["--profile", "debug", "--out"])
        .arg(&out_dir)
        .current_dir(ROOT)
        .output()
        .expect("running scripts/build-deb.sh");
    let build_stdout = String::from_utf8_lossy(&build.stdout);
    assert!(
        build.status.success(),
        "scripts/build-deb.sh failed: {}\n--- stdout\n{build_stdout}--- stderr\n{}",
        build.status,
        String::from_utf8_lossy(&build.stderr)
    );
    eprintln!("build-deb.sh --profile debug: {:.1?}", started.elapsed());
    let arch = stdout("dpkg", &["--print-architecture"]).trim().to_owned();
    let deb_version = VERSION.replacen('-', "~", 1);
    let deb = PathBuf::from(
        build_stdout
            .lines()
            .last()
            .expect("build-deb.sh printed nothing"),
    );
    assert_eq!(
        deb,
        out_dir.join(format!("ebpfsentinel_{deb_version}_{arch}.deb")),
        "the last line must be the package's path"
    );
    assert!(deb.is_file(), "{} missing", deb.display());

    // ---- control area, as dpkg-deb --info lists it ----
    let info = stdout("dpkg-deb", &[OsStr::new("--info"), deb.as_os_str()]);
    // Member lines: `SIZE bytes, N lines [*] NAME [interpreter]`, `*` marking executables.
    let members: BTreeMap<&str, bool> = info
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.get(1) != Some(&"bytes,") || words.get(3) != Some(&"lines") {
                return None;
            }
            match words.get(4) {
                Some(&"*") => Some((*words.get(5)?, true)),
                Some(name) => Some((*name, false)),
                None => None,
            }
        })
        .collect();
    let expected_members: BTreeMap<&str, bool> = [
        ("control", false),
        ("conffiles", false),
        ("md5sums", false),
        ("postinst", true),
        ("prerm", true),
        ("postrm", true),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        members, expected_members,
        "control area members and whether they are executable (left: found):\n{info}"
    );
    let control = stdout(
        "dpkg-deb",
        &[OsStr::new("--info"), deb.as_os_str(), OsStr::new("control")],
    );
    let fields = control_fields(&control);
    let field = |key: &str| -> &str {
        fields
            .get(key)
            .unwrap_or_else(|| panic!("control has no {key}:\n{control}"))
    };
    assert_eq!(field("Package"), "ebpfsentinel");
    assert_eq!(field("Version"), deb_version);
    assert_eq!(field("Architecture"), arch);
    assert_eq!(
        field("Maintainer"),
        "ebpfsentinel developers <dev@ebpfsentinel.invalid>"
    );
    assert_eq!(field("Section"), "net");
    assert_eq!(field("Priority"), "optional");
    assert!(
        field("Installed-Size")
            .parse::<u64>()
            .is_ok_and(|kib| kib > 0),
        "{control}"
    );
    let depends: Vec<&str> = field("Depends").split(',').map(str::trim).collect();
    for library in ["libc6", "libelf1", "zlib1g"] {
        assert!(
            depends
                .iter()
                .any(|d| d.starts_with(&format!("{library} (>= ")) && d.ends_with(')')),
            "Depends lacks a versioned {library}: {depends:?}"
        );
    }
    let description = field("Description");
    let (summary, long) = description
        .split_once('\n')
        .unwrap_or_else(|| panic!("Description has no extended part:\n{control}"));
    assert!(!summary.is_empty() && summary.len() <= 80, "{summary}");
    assert!(
        long.lines()
            .all(|l| l.starts_with(' ') && l.len() > 1 && l.len() <= 80),
        "extended description lines must be indented and at most 80 columns:\n{long}"
    );
    let conffiles = stdout(
        "dpkg-deb",
        &[
            OsStr::new("--info"),
            deb.as_os_str(),
            OsStr::new("conffiles"),
        ],
    );
    assert_eq!(conffiles, format!("/{CONFIG}\n"));

    // ---- data area, as dpkg-deb --contents lists it ----
    let contents = stdout("dpkg-deb", &[OsStr::new("--contents"), deb.as_os_str()]);
    let mut files = BTreeMap::new();
    for line in contents.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 6, "unexpected entry `{line}`");
        let (mode, owner, path) = (cols[0], cols[1], cols[5]);
        assert_eq!(owner, "root/root", "`{line}`");
        let path = path.trim_start_matches("./").trim_end_matches('/');
        match mode.chars().next() {
            Some('d') => assert_eq!(mode, "drwxr-xr-x", "`{line}`"),
            Some('-') => {
                files.insert(path.to_owned(), mode);
            }
            _ => panic!("neither a file nor a directory: `{line}`"),
        }
    }
    let expected = expected_files();
    let missing: Vec<_> = expected
        .iter()
        .filter(|(path, mode)| files.get(path.as_str()) != Some(*mode))
        .collect();
    let unexpected: Vec<_> = files
        .iter()
        .filter(|(path, mode)| expected.get(path.as_str()) != Some(*mode))
        .collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "expected files (path, mode) not in the package: {missing:?}\nin the package but not \
         expected: {unexpected:?}\n{contents}"
    );

    // ---- unpacked into a temp dir: the machine's own paths stay untouched ----
    let root = tmp.0.join("root");
    run(
        "dpkg-deb",
        &[OsStr::new("-x"), deb.as_os_str(), root.as_os_str()],
    );
    let control_dir = tmp.0.join("control");
    run(
        "dpkg-deb",
        &[OsStr::new("-e"), deb.as_os_str(), control_dir.as_os_str()],
    );
    let md5sums = Command::new("md5sum")
        .args(["--check", "--quiet", "--strict"])
        .arg(control_dir.join("md5sums"))
        .current_dir(&root)
        .output()
        .expect("running md5sum");
    assert!(
        md5sums.status.success(),
        "DEBIAN/md5sums does not match the files: {}",
        String::from_utf8_lossy(&md5sums.stdout)
    );
    let md5_listed = std::fs::read_to_string(control_dir.join("md5sums")).unwrap();
    assert_eq!(md5_listed.lines().count(), expected.len(), "{md5_listed}");

    let binary = root.join("usr/sbin/ebpfsentinel");
    let version = stdout(binary.to_str().unwrap(), &["--version"]);
    assert_eq!(version.trim(), format!("ebpfsentinel {VERSION}"));
    let check = stdout(
        binary.to_str().unwrap(),
        &[
            OsStr::new("check"),
            OsStr::new("-c"),
            root.join(CONFIG).as_os_str(),
        ],
    );
    assert!(check.contains(": ok: "), "{check}");
    assert_eq!(
        std::fs::read_to_string(root.join(CONFIG)).unwrap(),
        std::fs::read_to_string(Path::new(ROOT).join("examples/config.yaml")).unwrap(),
        "the packaged config is examples/config.yaml"
    );

    for page in expected_man_pages() {
        let text = gunzip(&root.join(MAN_DIR).join(&page));
        let title = page.trim_end_matches(".8.gz").to_uppercase();
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!(".TH {title} 8 ")),
            "{page} starts with `{first}`"
        );
        assert!(text.contains("\n.SH NAME\n"), "{page}:\n{text}");
    }
    let top = gunzip(&root.join(MAN_DIR).join("ebpfsentinel.8.gz"));
    assert!(top.contains("ebpfsentinel\\-check(8)"), "{top}");

    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    assert!(read("usr/share/bash-completion/completions/ebpfsentinel").contains("_ebpfsentinel()"));
    assert!(
        read("usr/share/zsh/vendor-completions/_ebpfsentinel").starts_with("#compdef ebpfsentinel")
    );
    assert!(
        read("usr/share/fish/vendor_completions.d/ebpfsentinel.fish")
            .contains("complete -c ebpfsentinel")
    );
    let copyright = read("usr/share/doc/ebpfsentinel/copyright");
    assert!(copyright.contains("License: GPL-2.0-only"), "{copyright}");
    assert!(
        copyright.contains("/usr/share/common-licenses/GPL-2"),
        "{copyright}"
    );

    // ---- the unit ----
    let unit = read(UNIT);
    let settings: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for line in [
        "Type=simple",
        "ExecStartPre=+/bin/sh -c 'mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf'",
        "ExecStart=/usr/sbin/ebpfsentinel run --config /etc/ebpfsentinel/config.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_SYS_ADMIN",
        "AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_SYS_ADMIN",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/sys/fs/bpf /run/ebpfsentinel /var/lib/ebpfsentinel",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RuntimeDirectory=ebpfsentinel",
        "RuntimeDirectoryPreserve=yes",
        "StateDirectory=ebpfsentinel",
        "WantedBy=multi-user.target",
    ] {
        assert!(settings.contains(&line), "the unit lacks `{line}`:\n{unit}");
    }
    assert!(
        !settings.iter().any(|l| l.starts_with("LimitMEMLOCK")),
        "{unit}"
    );
    verify_unit(&root);

    // ---- maintainer scripts: shell syntax and the parts that matter ----
    for script in ["postinst", "prerm", "postrm"] {
        let path = control_dir.join(script);
        run("sh", &[OsStr::new("-n"), path.as_os_str()]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{script}");
        assert!(text.lines().any(|l| l.trim() == "set -e"), "{script}");
    }
    let script = |name: &str| std::fs::read_to_string(control_dir.join(name)).unwrap();
    let postinst = script("postinst");
    assert!(postinst.contains("deb-systemd-helper enable"), "{postinst}");
    assert!(postinst.contains("try-restart"), "{postinst}");
    let prerm = script("prerm");
    assert!(prerm.contains("/usr/sbin/ebpfsentinel down"), "{prerm}");
    let postrm = script("postrm");
    assert!(postrm.contains("purge)"), "{postrm}");
    assert!(postrm.contains("/var/lib/ebpfsentinel"), "{postrm}");
}

/// `systemd-analyze verify` on the unpacked unit, with the paths it names pointed into the
/// unpacked tree (it checks that the binary and the man pages exist). Works without systemd
/// as PID 1. systemd-analyze is not part of dpkg: without it, only the check above runs.
fn verify_unit(root: &Path) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not found: the unit was not verified (apt-get install systemd)");
        return;
    }
    let unit = std::fs::read_to_string(root.join(UNIT)).unwrap().replace(
        "/usr/sbin/ebpfsentinel",
        root.join("usr/sbin/ebpfsentinel").to_str().unwrap(),
    );
    let dir = root.join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ebpfsentinel.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", root.join("usr/share/man"))
        .output()
        .expect("running systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

/// The example config documents its optional parts as commented-out YAML; uncommented (with
/// the alias files they name), they must pass `check` too.
#[test]
fn example_config_commented_examples_are_valid() {
    let tmp = TempDir::new("examples");
    let text = std::fs::read_to_string(Path::new(ROOT).join("examples/config.yaml")).unwrap();
    let mut uncommented = 0;
    let yaml: String = text
        .lines()
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            let example = line[indent..].strip_prefix("# ").filter(|body| {
                ["allowlist:", "aliases:", "- {"]
                    .iter()
                    .any(|start| body.starts_with(start))
                    || (body.starts_with("  ") && body.trim_start().contains(": { "))
            });
            match example {
                Some(body) => {
                    uncommented += 1;
                    format!("{}{body}\n", &line[..indent])
                }
                None => format!("{line}\n"),
            }
        })
        .collect();
    assert!(
        uncommented >= 10,
        "found only {uncommented} example lines:\n{yaml}"
    );
    let config = tmp.0.join("config.yaml");
    std::fs::write(&config, &yaml).unwrap();
    for line in yaml.lines() {
        if let Some((_, file)) = line.split_once("file: ") {
            let file = file.split([',', ' ', '}']).next().unwrap();
            std::fs::write(tmp.0.join(file), "192.0.2.0/24\n2001:db8:f::/48\n").unwrap();
        }
    }
    let out = Command::new(BIN)
        .args([OsStr::new("check"), OsStr::new("-c"), config.as_os_str()])
        .output()
        .expect("running ebpfsentinel check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(": ok: "),
        "{}\n--- stdout\n{stdout}--- stderr\n{stderr}--- config\n{yaml}",
        out.status
    );
    // Every rule example is active in the uncommented copy.
    let rules = yaml
        .lines()
        .filter(|l| l.trim_start().starts_with("- {"))
        .count();
    assert!(stdout.contains(&format!("ok: {rules} rules")), "{stdout}");
}
