//! Compiles every `bpf/*.bpf.c` into a libbpf-rs skeleton in OUT_DIR.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_cargo::util::CargoWarningFormatter;
use libbpf_cargo::SkeletonBuilder;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

fn clang() -> String {
    if let Ok(clang) = env::var("CLANG") {
        return clang;
    }
    for candidate in ["clang-19", "clang"] {
        let works = Command::new(candidate)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if works {
            return candidate.to_string();
        }
    }
    panic!("no clang found: install clang-19 (scripts/setup.sh) or set CLANG=/path/to/clang");
}

fn vmlinux_dir(manifest: &Path) -> PathBuf {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    let dir = manifest.join("vmlinux").join(&arch);
    assert!(
        dir.join("vmlinux.h").exists(),
        "no vmlinux/{arch}/vmlinux.h: generate it with scripts/gen-vmlinux.sh"
    );
    dir
}

fn main() {
    // Only what clang printed; libbpf-cargo's own info lines are noise in a build.
    let clang_output = Targets::new()
        .with_target("compiler-stderr", LevelFilter::INFO)
        .with_target("compiler-stdout", LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(CargoWarningFormatter)
                .with_filter(clang_output),
        )
        .init();
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let clang = clang();
    let vmlinux = vmlinux_dir(&manifest);
    let bpf_dir = manifest.join("bpf");

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&bpf_dir)
        .expect("bpf/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();

    for src in &sources {
        let file = src.file_name().unwrap().to_string_lossy().into_owned();
        let stem = file.trim_end_matches(".bpf.c");
        let skel = out.join(format!("{stem}.skel.rs"));
        let obj = out.join(format!("{stem}.bpf.o"));
        let result = SkeletonBuilder::new()
            .source(src)
            .obj(&obj)
            .clang(&clang)
            .clang_args([
                "-I".into(),
                manifest.join("include").into_os_string(),
                "-I".into(),
                vmlinux.clone().into_os_string(),
                "-Wall".into(),
                "-Werror".into(),
            ])
            .build_and_generate(&skel);
        if let Err(err) = result {
            panic!("compiling {file} failed:\n{err:#}");
        }
    }

    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-changed=bpf/lib");
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-changed=include/abi");
    println!("cargo:rerun-if-changed=vmlinux");
    println!("cargo:rerun-if-env-changed=CLANG");
}
