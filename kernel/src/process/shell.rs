//! Processes from the console: `exec PATH [ARGS...] [&]`, `ps`, and the
//! kill of a process (`kill PID [SIG]`, through the `kill` command), and
//! the kernel command line's `exec PATH [ARGS...]` mode.

use alloc::string::String;
use alloc::vec::Vec;

use fsdax_abi::signal::{self as sig, Exit};
use fsdax_ktest::protocol::{ExitCode, EXEC_STATUS_PREFIX};

use super::{console, Death, Ended, Parent, Pid, State};

/// The environment of programs started from the console.
const ENV: &[&str] = &["PATH=/bin", "HOME=/", "TERM=dumb"];

/// How a program ended, as the console prints it: `exit 3`,
/// `killed by SIGTERM`, and for a fault the code and address:
/// `killed by SIGSEGV (SEGV_MAPERR at 0x0)`, `killed by SIGSEGV
/// (SI_KERNEL)` (a #GP: privileged instruction, non-canonical address).
pub fn describe(how: Exit, death: Option<Death>) -> String {
    match how {
        Exit::Code(c) => alloc::format!("exit {c}"),
        Exit::Signal(s) => {
            let info = death.map(|d| d.info).filter(|i| i.signo == s);
            match info {
                Some(i) if sig::has_fault_addr(&i) => {
                    let addr = match i.fields {
                        fsdax_abi::wire::SigFields::Fault { addr, .. } => addr,
                        _ => 0,
                    };
                    let code =
                        sig::code_name(s, i.code).map_or_else(|| alloc::format!("code {}", i.code), String::from);
                    alloc::format!("killed by {} ({code} at {addr:#x})", sig::name(s))
                }
                Some(i) if i.code == sig::SI_KERNEL && sig::SYNCHRONOUS & sig::bit(s) != 0 => {
                    alloc::format!("killed by {} (SI_KERNEL)", sig::name(s))
                }
                _ => alloc::format!("killed by {}", sig::name(s)),
            }
        }
    }
}

/// [`describe`] of a reaped process.
pub fn describe_end(e: &Ended) -> String {
    describe(e.how, e.death)
}

fn start(args: &[&str]) -> Result<Pid, String> {
    start_after_load(args, || Ok(()))
}

fn start_after_load(args: &[&str], between: impl FnOnce() -> Result<(), String>) -> Result<Pid, String> {
    let Some(&path) = args.first() else { return Err(String::from("usage: exec PATH [ARGS...] [&]")) };
    let argv: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    let envp: Vec<Vec<u8>> = ENV.iter().map(|e| e.as_bytes().to_vec()).collect();
    super::spawn_after_load(path, &argv, &envp, Parent::Console, between)
        .map_err(|e| alloc::format!("exec {path}: {e}"))
}

/// Runs a program in the foreground: typed bytes go to it (Ctrl-C sends
/// SIGINT); returns how it ended.
pub fn run_foreground(args: &[&str]) -> Result<Ended, String> {
    run_foreground_after_load(args, || Ok(()))
}

/// [`run_foreground`], running `between` after the program is loaded and
/// before it starts.
fn run_foreground_after_load(args: &[&str], between: impl FnOnce() -> Result<(), String>) -> Result<Ended, String> {
    let pid = start_after_load(args, between)?;
    console::set_foreground(Some(pid));
    let ended = loop {
        if let Some(e) = super::reap(pid) {
            break e;
        }
        match fsdax_hal::console::read_byte() {
            Some(0x03) => {
                // As a terminal's line discipline sends it: SI_KERNEL.
                if let Some(p) = super::get(pid) {
                    let _ = p.send(sig::kill_info(sig::SIGINT, sig::SI_KERNEL, 0));
                }
            }
            Some(b) => {
                // Echo, as a terminal would.
                console::write(&[if b == b'\r' { b'\n' } else { b }]);
                console::push(b);
            }
            None => crate::task::sleep_ticks(1),
        }
    };
    console::set_foreground(None);
    Ok(ended)
}

fn background_report() {
    for p in super::all() {
        if *p.parent.lock() == Parent::Console && matches!(p.state(), State::Zombie(_)) {
            if let Some(e) = super::reap(p.pid()) {
                crate::kprintln!("[{}] {} ({})", p.pid(), describe_end(&e), p.name());
            }
        }
    }
}

fn cmd_exec(args: &[&str]) {
    background_report();
    if args.last() == Some(&"&") {
        match start(&args[..args.len() - 1]) {
            Ok(pid) => crate::kprintln!("[{pid}] started in the background (`ps` lists it, `kill {pid}` ends it)"),
            Err(e) => crate::kprintln!("{e}"),
        }
        return;
    }
    match run_foreground(args) {
        Ok(e) => crate::kprintln!("{}", describe_end(&e)),
        Err(e) => crate::kprintln!("{e}"),
    }
}

fsdax_hal::shell_command!(EXEC_CMD, name: "exec", usage: "exec PATH [ARGS...] [&]",
    help: "run a program from the mounted file system (& in the background)",
    run: cmd_exec);

fn cmd_ps(_: &[&str]) {
    background_report();
    crate::kprintln!("  PID  PPID  STATE    MAPPED     MINFLT  NAME");
    for p in super::all() {
        let state = match p.state() {
            State::Alive => String::from("running"),
            State::Zombie(how) => describe(how, p.death()),
        };
        let mapped = p.vm().map_or(0, |v| v.mapped_bytes());
        let ppid = match *p.parent.lock() {
            Parent::Process(pp) => alloc::format!("{pp}"),
            Parent::Console => String::from("-"),
            Parent::Kernel => String::from("0"),
        };
        crate::kprintln!(
            "{:5}  {:>4}  {:<7}  {:>6} KiB  {:6}  {}",
            p.pid(),
            ppid,
            state,
            mapped / 1024,
            p.minflt.load(core::sync::atomic::Ordering::Relaxed),
            p.name()
        );
    }
}

fsdax_hal::shell_command!(PS_CMD, name: "ps", usage: "ps", help: "list processes", run: cmd_ps);

/// Parses a signal given as a number or a name (`9`, `KILL`, `SIGKILL`).
pub fn parse_signal(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return sig::valid(n).then_some(n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    (1..32).find(|&n| sig::name(n).strip_prefix("SIG") == Some(name))
}

/// `kill PID [SIG]` for a process (the `kill` command sends here when the
/// id is a process's): SIGTERM by default. The signal takes effect at the
/// process's next return to user mode.
pub fn kill_command(pid: Pid, signal: Option<&str>) {
    let s = match signal.map(parse_signal) {
        None => sig::SIGTERM,
        Some(Some(s)) => s,
        Some(None) => {
            crate::kprintln!(
                "kill: {} is not a signal (a number, or a name like TERM or SIGKILL)",
                signal.unwrap_or("")
            );
            return;
        }
    };
    match super::get(pid) {
        Some(p) if p.state() == State::Alive => {
            p.signal(s);
            crate::kprintln!("sent {} to process {pid} ({})", sig::name(s), p.name());
        }
        Some(_) => crate::kprintln!("kill: process {pid} has already ended"),
        None => crate::kprintln!("kill: no process {pid} (`ps` lists them)"),
    }
}

/// Mounts pmem0's file system at boot if it holds one, and says so.
pub fn mount_at_boot() -> bool {
    let Some(dev) = crate::pmem::device("pmem0") else {
        crate::kprintln!("no pmem0: programs cannot be run (the machine has no NVDIMM)");
        return false;
    };
    match crate::fsys::mount(dev) {
        Ok(()) => {
            crate::kprintln!("mounted pmem0 (the fsdax file system); `exec /bin/PROGRAM` runs a program from it");
            true
        }
        Err(e) => {
            crate::kprintln!("pmem0 is not mounted: {e}");
            false
        }
    }
}

/// The `run [fsck] [raw] PATH [ARGS...]` command line: the mode the host's
/// benchmark and scenario runners boot (`fsdax_boot::system`). With `raw`
/// the program is loaded from the file system, which is then unmounted
/// while it runs (it uses the raw device, `/dev/pmem0`) and mounted again
/// after it (for `fsck`). It speaks
/// their status protocol, one line each, prefixed `@@fsdax `: `ready: ...`
/// once the file system is mounted, `exit N` when the program ended (N as a
/// shell reports it), `dmesg: ...` for each warning or error the kernel
/// logs meanwhile, `fsck clean` or `fsck errors: ...` with `fsck`, `error:
/// ...` when something could not be done, and `done` last; then QEMU exits
/// with [`ExitCode::ProgramEnded`].
pub fn run_system_mode(args: &[&str]) -> ! {
    let (fsck, program) = match args.split_first() {
        Some((&"fsck", rest)) => (true, rest),
        _ => (false, args),
    };
    let (raw, program) = match program.split_first() {
        Some((&"raw", rest)) => (true, rest),
        _ => (false, program),
    };
    crate::log::mirror_warnings_as_status(true);
    if program.is_empty() {
        crate::kprintln!("@@fsdax error: no program to run (run [fsck] PATH [ARGS...])");
    } else if mount_at_boot() {
        let (used, total) = crate::fsys::with_fs_read(|fs| {
            let st = fs.statfs();
            (st.data_blocks - st.free_blocks, st.data_blocks)
        })
        .unwrap_or((0, 0));
        crate::kprintln!(
            "@@fsdax ready: fsdax {} on x86_64, pmem0 {} MiB, {} of {} blocks in use",
            env!("CARGO_PKG_VERSION"),
            crate::pmem::device("pmem0").map_or(0, |d| d.len() >> 20),
            used,
            total
        );
        let ran = if raw {
            run_foreground_after_load(program, || {
                crate::fsys::unmount().map_err(|e| alloc::format!("unmounting pmem0: {e}"))
            })
        } else {
            run_foreground(program)
        };
        match ran {
            Ok(e) => crate::kprintln!("@@fsdax exit {}", e.how.shell_status()),
            Err(e) => crate::kprintln!("@@fsdax error: {e}"),
        }
        if raw {
            // The program's end released the device (its descriptors and
            // mappings are gone with it).
            match crate::pmem::device("pmem0").map(crate::fsys::mount) {
                Some(Ok(())) => {}
                Some(Err(e)) => crate::kprintln!("@@fsdax error: mounting pmem0 again: {e}"),
                None => crate::kprintln!("@@fsdax error: no pmem0"),
            }
        }
        if fsck {
            match crate::fsys::check() {
                Ok(()) => crate::kprintln!("@@fsdax fsck clean"),
                Err(why) => crate::kprintln!("@@fsdax fsck errors: {why}"),
            }
        }
    } else {
        crate::kprintln!("@@fsdax error: pmem0 holds no file system that mounts (see the lines above)");
    }
    crate::kprintln!("@@fsdax done");
    fsdax_hal::power::exit_qemu(ExitCode::ProgramEnded)
}

/// The `exec PATH [ARGS...]` command line: mount, run, print the end
/// line, leave QEMU with [`ExitCode::ProgramEnded`].
pub fn run_exec_mode(args: &[&str]) -> ! {
    if mount_at_boot() {
        match run_foreground(args) {
            Ok(e) => crate::kprintln!("{EXEC_STATUS_PREFIX}{} ({})", e.how.shell_status(), describe_end(&e)),
            Err(e) => {
                crate::kprintln!("{e}");
                crate::kprintln!("{EXEC_STATUS_PREFIX}127 (could not start)");
            }
        }
    } else {
        crate::kprintln!("{EXEC_STATUS_PREFIX}127 (no file system)");
    }
    fsdax_hal::power::exit_qemu(ExitCode::ProgramEnded)
}
