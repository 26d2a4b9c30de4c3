//! File-system tool subcommands (`mkfs`, `fsck`, `ls`, ...) on the NVDIMM
//! image file. Filled in by the file-system work (issue 4).

/// Runs `cmd` if it is a file-system tool subcommand; `None` if it is not one.
pub fn run(cmd: &str, args: &[String]) -> Option<Result<(), String>> {
    let _ = (cmd, args);
    None
}

/// One line per subcommand for `fsdax help`.
pub const HELP: &str = "";
