//! The serial console: a prompt with basic line editing, and commands.
//!
//! A command is a small registered unit: `shell_command!` places a
//! [`Command`] in the `kshell` linker section beside the code it belongs to,
//! and the shell finds every command there.

use alloc::string::String;
use alloc::vec::Vec;

use fsdax_ktest::protocol::PROMPT;

/// A console command.
#[derive(Debug)]
pub struct Command {
    pub name: &'static str,
    pub usage: &'static str,
    pub help: &'static str,
    pub run: fn(&[&str]),
}

/// Registers a console command.
#[macro_export]
macro_rules! shell_command {
    ($id:ident, name: $name:expr, usage: $usage:expr, help: $help:expr, run: $run:expr $(,)?) => {
        #[used]
        #[link_section = "kshell"]
        static $id: $crate::shell::Command =
            $crate::shell::Command { name: $name, usage: $usage, help: $help, run: $run };
    };
}

// Linker-defined symbols, never called or read by value through FFI.
#[allow(improper_ctypes)]
extern "C" {
    #[link_name = "__start_kshell"]
    static KSHELL_START: Command;
    #[link_name = "__stop_kshell"]
    static KSHELL_STOP: Command;
}

/// Every registered command, sorted by name.
pub fn commands() -> Vec<&'static Command> {
    // SAFETY: the linker defines __start_/__stop_kshell around the `kshell`
    // section, which holds only `Command` statics placed by `shell_command!`.
    let all = unsafe {
        let start = core::ptr::addr_of!(KSHELL_START);
        let stop = core::ptr::addr_of!(KSHELL_STOP);
        core::slice::from_raw_parts(start, (stop as usize - start as usize) / core::mem::size_of::<Command>())
    };
    let mut v: Vec<&'static Command> = all.iter().collect();
    v.sort_by_key(|c| c.name);
    v
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
        let Some(byte) = crate::log::read_byte() else {
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

shell_command!(HELP, name: "help", usage: "help", help: "list the commands", run: |_| {
    for c in commands() {
        crate::kprintln!("  {:<34} {}", c.usage, c.help);
    }
});

shell_command!(UPTIME, name: "uptime", usage: "uptime", help: "time since boot and timer ticks", run: |_| {
    let us = crate::time::uptime_us();
    crate::kprintln!("up {}.{:06} s, {} ticks", us / 1_000_000, us % 1_000_000, crate::time::ticks());
});

fsdax_ktest::ktest!(shell_has_the_basic_commands, {
    for name in ["help", "mem", "tasks", "poweroff", "kill", "fault"] {
        fsdax_ktest::kassert!(commands().iter().any(|c| c.name == name), "a basic command is missing");
    }
    fsdax_ktest::kassert!(!execute("no-such-command"));
    Ok(())
});
