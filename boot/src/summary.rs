//! The summary `./fsdax test` prints after cargo's output.
//!
//! Tests record one line each into files under the directory named by the
//! environment variable [`ENV`] (the test command sets it to
//! `target/fsdax/summary/` and prints and clears the files afterwards); when
//! it is unset (a plain `cargo test`), nothing is recorded. Files, one per
//! kind of line:
//!
//! | file | line | written by |
//! |------|------|------------|
//! | `kernel-tests` | `FIRMWARE PASSED FAILED SKIPPED` | the QEMU test that runs the in-kernel harness |
//! | `qemu-scenarios` | `NAME started` / `NAME passed` | every QEMU test ([`Scenario`]) |
//! | `crash-states` | `STATES WORKLOAD` | the file system's crash tests |
//! | `hostile-images` | `MUTATED MOUNTED REFUSED` | the file system's hostile-image test |

use std::io::Write;
use std::path::PathBuf;

/// The environment variable that names the summary directory.
pub const ENV: &str = "FSDAX_SUMMARY_DIR";

/// The summary directory, if the test command asked for a summary.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os(ENV).map(PathBuf::from)
}

/// Appends `line` to the summary file `kind` (no-op without [`ENV`]).
pub fn record(kind: &str, line: &str) {
    let Some(dir) = dir() else { return };
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(kind)) {
        // One write per line: concurrent tests append whole lines.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// Records a QEMU scenario: `NAME started` now, `NAME passed` when dropped
/// without a panic.
#[derive(Debug)]
pub struct Scenario {
    name: String,
}

impl Scenario {
    /// Starts recording scenario `name`.
    pub fn start(name: &str) -> Scenario {
        record("qemu-scenarios", &format!("{name} started"));
        Scenario { name: name.to_string() }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            record("qemu-scenarios", &format!("{} passed", self.name));
        }
    }
}
