mod fetch;
mod merge;
mod parse;
mod state;

use std::path::PathBuf;

use ipnet::IpNet;

use crate::config::{FeedConfig, FeedFormat, FeedSource, Location};

const FEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/feeds");

fn feed_text(name: &str) -> String {
    let path = format!("{FEEDS}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn net(text: &str) -> IpNet {
    text.parse().expect("test network literal")
}

fn feed_config(id: &str, source: FeedSource, format: FeedFormat) -> FeedConfig {
    FeedConfig {
        id: id.to_owned(),
        location: Location {
            file: PathBuf::from("/etc/ebpfsentinel/config.yaml"),
            line: 1,
            col: 1,
        },
        source,
        format,
        field: None,
        confidence_field: None,
        category_field: None,
        refresh: None,
        action: None,
        min_confidence: 0,
    }
}

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ebpfsentinel-feeds-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
