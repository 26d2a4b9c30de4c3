//! The kernel command line, passed by the host through QEMU fw_cfg
//! (`opt/fsdax/cmdline`) so one image serves every mode. The grammar and
//! its parser are in `fsdax_kcore::cmdline` (host-tested).

use fsdax_kcore::cmdline::{parse, Cmdline};
use fsdax_ktest::protocol::FW_CFG_CMDLINE;

/// Reads the command line from fw_cfg (`shell` when there is none); the
/// flag says whether fw_cfg had one.
pub fn read() -> (Cmdline, bool) {
    let mut buf = [0u8; 512];
    match fsdax_hal::firmware::read_fw_cfg_file(FW_CFG_CMDLINE, &mut buf) {
        Some(len) => {
            let len = len.min(buf.len());
            match core::str::from_utf8(&buf[..len]) {
                Ok(text) => (parse(text), true),
                Err(_) => {
                    crate::warn!("cmdline: not UTF-8; using the default");
                    (parse(""), true)
                }
            }
        }
        None => (parse(""), false),
    }
}

fsdax_ktest::ktest!(cmdline_comes_from_fw_cfg, {
    if !fsdax_hal::firmware::under_qemu() {
        fsdax_ktest::kskip!("needs QEMU's fw_cfg");
    }
    // The harness itself was started by a `test` command line.
    let (c, from_fw_cfg) = read();
    fsdax_ktest::kassert!(from_fw_cfg, "no fw_cfg command line");
    fsdax_ktest::kassert_eq!(c.mode.as_str(), "test");
    Ok(())
});
