//! The serial console: a prompt with basic line editing, and commands.
//!
//! A command is a small registered unit: `fsdax_hal::shell_command!` places
//! a `ShellCommand` in the `kshell` linker section beside the code it
//! belongs to, and the shell finds every command there. Helpers every
//! command uses (number parsing, hex dumps) live here, once.

use alloc::string::String;
use alloc::vec::Vec;

use fsdax_hal::registry::{shell_commands, ShellCommand};
use fsdax_ktest::protocol::PROMPT;

/// Every registered command, sorted by name.
pub fn commands() -> Vec<&'static ShellCommand> {
    let mut v: Vec<&'static ShellCommand> = shell_commands().iter().collect();
    v.sort_by_key(|c| c.name);
    v
}

/// Parses a number the way every console command takes one: decimal, or
/// hex with `0x`, optionally followed by `K`, `M` or `G` (binary units).
/// It is the workspace's one parser (`fsdax_pmem_api::units`).
pub fn parse_num(s: &str) -> Option<u64> {
    fsdax_pmem_api::units::parse_size(s).ok()
}

/// Hex dump, 16 bytes a line, addresses from `base` in `width` hex digits;
/// with `fold`, repeated lines collapse into one `*`.
pub fn hexdump(base: u64, bytes: &[u8], width: usize, fold: bool) {
    let mut prev: Option<&[u8]> = None;
    let mut folded = false;
    let mut line = String::with_capacity(16 * 3 + width + 2);
    for (i, chunk) in bytes.chunks(16).enumerate() {
        if fold && prev == Some(chunk) && i * 16 + 16 < bytes.len() {
            if !folded {
                crate::kprintln!("*");
                folded = true;
            }
            continue;
        }
        folded = false;
        prev = Some(chunk);
        line.clear();
        use core::fmt::Write;
        let _ = write!(line, "{:0width$x}:", base + (i * 16) as u64);
        for b in chunk {
            let _ = write!(line, " {b:02x}");
        }
        crate::kprintln!("{line}");
    }
}

/// Runs one command line; false if the command is unknown.
pub fn execute(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&name, args)) = words.split_first() else { return true };
    match commands().into_iter().find(|c| c.name == name) {
        Some(cmd) => {
            (cmd.run)(args);
            true
        }
        None => {
            crate::kprintln!("unknown command: {name} (try `help`)");
            false
        }
    }
}

/// The console loop: never returns.
pub fn run() -> ! {
    crate::kprintln!("fsdax console; `help` lists the commands");
    let mut line = String::new();
    crate::kprint!("{PROMPT}");
    loop {
        let Some(byte) = fsdax_hal::console::read_byte() else {
            // Nothing typed: sleep a tick rather than spin.
            crate::task::sleep_ticks(1);
            continue;
        };
        match byte {
            b'\r' | b'\n' => {
                crate::kprintln!();
                execute(&line);
                line.clear();
                crate::kprint!("{PROMPT}");
            }
            0x08 | 0x7f => {
                if line.pop().is_some() {
                    crate::kprint!("\x08 \x08");
                }
            }
            0x15 => {
                // Ctrl-U: erase the line.
                for _ in 0..line.len() {
                    crate::kprint!("\x08 \x08");
                }
                line.clear();
            }
            b if (0x20..0x7f).contains(&b) && line.len() < 256 => {
                line.push(char::from(b));
                crate::kprint!("{}", char::from(b));
            }
            _ => {}
        }
    }
}

fsdax_hal::shell_command!(HELP, name: "help", usage: "help", help: "list the commands", run: |_| {
    for c in commands() {
        crate::kprintln!("  {:<34} {}", c.usage, c.help);
    }
});

fsdax_hal::shell_command!(UPTIME, name: "uptime", usage: "uptime", help: "time since boot and timer ticks", run: |_| {
    let us = crate::time::uptime_us();
    crate::kprintln!("up {}.{:06} s, {} ticks", us / 1_000_000, us % 1_000_000, crate::time::ticks());
});

fsdax_ktest::ktest!(shell_has_the_basic_commands, {
    for name in ["help", "mem", "tasks", "poweroff", "kill", "fault", "exec", "ps"] {
        fsdax_ktest::kassert!(commands().iter().any(|c| c.name == name), "a basic command is missing");
    }
    fsdax_ktest::kassert!(!execute("no-such-command"));
    Ok(())
});

fsdax_ktest::ktest!(numbers_parse_with_units, {
    use fsdax_ktest::kassert_eq;
    kassert_eq!(parse_num("4096"), Some(4096));
    kassert_eq!(parse_num("0x200140"), Some(0x20_0140));
    kassert_eq!(parse_num("64K"), Some(64 << 10));
    kassert_eq!(parse_num("2m"), Some(2 << 20));
    kassert_eq!(parse_num("1G"), Some(1 << 30));
    kassert_eq!(parse_num(""), None);
    kassert_eq!(parse_num("0x"), None);
    kassert_eq!(parse_num("12q"), None);
    kassert_eq!(parse_num("99999999999G"), None, "overflow is an error");
    Ok(())
});
