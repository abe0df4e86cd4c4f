//! The daemon's control socket: one Unix socket per pin root, mode 0600, one line in
//! (`events`, `events follow`, `reload`), text out. It is how `ebpfsentinel events` reads the
//! ring buffer without becoming a second consumer, and how `reload` learns the outcome.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub fn socket_path(pin_root: &Path) -> PathBuf {
    crate::state::state_path(pin_root).with_extension("sock")
}

/// Sends one command and hands every line of the answer to `line` until the daemon closes.
/// One command's whole answer; an `error ...` answer becomes the error.
pub fn ask(pin_root: &Path, command: &str) -> Result<String> {
    let mut answer = String::new();
    request(pin_root, command, |l| {
        answer.push_str(l);
        answer.push('\n');
        Ok(())
    })?;
    if let Some(e) = answer.strip_prefix("error ") {
        anyhow::bail!("{}", e.trim_end());
    }
    Ok(answer)
}

pub fn request(
    pin_root: &Path,
    command: &str,
    mut line: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let path = socket_path(pin_root);
    let mut stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "no daemon answers on {} (is `ebpfsentinel run` running with pin root {}?)",
            path.display(),
            pin_root.display()
        )
    })?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    for l in BufReader::new(stream).lines() {
        line(&l?)?;
    }
    Ok(())
}
