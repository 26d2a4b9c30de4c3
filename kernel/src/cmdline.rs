//! The kernel command line, passed by the host through QEMU fw_cfg
//! (`opt/fsdax/cmdline`) so one image serves every mode.
//!
//! Grammar: `MODE [ARGS...] [loglevel=LEVEL]`, where MODE is `shell`
//! (default), `test [selftest] [FILTER...]` or `bench [NAME...]`.

use alloc::string::String;
use alloc::vec::Vec;

use fsdax_drivers::fw_cfg::FwCfg;
use fsdax_ktest::protocol::FW_CFG_CMDLINE;

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    pub mode: String,
    pub args: Vec<String>,
    pub log_level: Option<crate::log::Level>,
}

/// Parses a command line.
pub fn parse(text: &str) -> Cmdline {
    let mut words = text.split_whitespace().filter(|w| !w.starts_with("loglevel="));
    let mode = String::from(words.next().unwrap_or("shell"));
    let args = words.map(String::from).collect();
    let log_level =
        text.split_whitespace().find_map(|w| w.strip_prefix("loglevel=")).and_then(crate::log::Level::parse);
    Cmdline { mode, args, log_level }
}

/// Reads the command line from fw_cfg; `shell` when there is none.
pub fn read() -> (Cmdline, bool) {
    let mut buf = [0u8; 512];
    // SAFETY: ports 0x510/0x511 are fw_cfg on QEMU and unused on PCs without it.
    let found = unsafe { FwCfg::probe() }.and_then(|mut cfg| cfg.read_file(FW_CFG_CMDLINE, &mut buf));
    match found {
        Some(len) => {
            let len = len.min(buf.len());
            let text = core::str::from_utf8(&buf[..len]).unwrap_or("shell");
            (parse(text.trim_end_matches('\0')), true)
        }
        None => (parse(""), false),
    }
}

fsdax_ktest::ktest!(cmdline_parses_modes, {
    use fsdax_ktest::kassert_eq;
    let c = parse("test selftest mm loglevel=debug");
    kassert_eq!(c.mode.as_str(), "test");
    kassert_eq!(c.args, alloc::vec![String::from("selftest"), String::from("mm")]);
    kassert_eq!(c.log_level, Some(crate::log::Level::Debug));
    let empty = parse("");
    kassert_eq!(empty.mode.as_str(), "shell");
    Ok(())
});

fsdax_ktest::ktest!(cmdline_comes_from_fw_cfg, {
    // The harness itself was started by a `test` command line.
    let (c, from_fw_cfg) = read();
    fsdax_ktest::kassert!(from_fw_cfg, "no fw_cfg command line");
    fsdax_ktest::kassert_eq!(c.mode.as_str(), "test");
    Ok(())
});
