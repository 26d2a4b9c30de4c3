//! Running the kernel in QEMU with an emulated NVDIMM.
//!
//! The machine is described in `qemu/pc-nvdimm.args`; this module fills in
//! its placeholders, picks the accelerator, creates the NVDIMM backing file
//! when it is missing, and either hands the terminal to QEMU (`fsdax run`)
//! or drives the serial console from a program ([`Machine`], for tests).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::build::Firmware;
use crate::workspace_root;

/// Default size of the NVDIMM backing file.
pub const DEFAULT_PMEM_SIZE: u64 = 256 << 20;

/// The accelerator QEMU runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation: only where the host CPU shows `vmx` or `svm`.
    Kvm,
    /// Software emulation with `-cpu max,vendor=GenuineIntel` (`clwb`,
    /// `clflushopt` and Intel machine-check semantics).
    Tcg,
}

impl Accel {
    /// KVM only when `/dev/kvm` exists *and* the host CPU has `vmx`/`svm`:
    /// a nested software hypervisor without them is ~900x slower than TCG and
    /// kills guests that use `clwb`. `FSDAX_ACCEL=tcg|kvm` overrides.
    pub fn detect() -> Accel {
        match std::env::var("FSDAX_ACCEL").as_deref() {
            Ok("tcg") => return Accel::Tcg,
            Ok("kvm") => return Accel::Kvm,
            _ => {}
        }
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let hw_virt = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        if hw_virt && Path::new("/dev/kvm").exists() {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }

    fn qemu_accel(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    fn qemu_cpu(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max,vendor=GenuineIntel",
        }
    }

    /// A one-line explanation for the output.
    pub fn describe(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM (host CPU has vmx/svm)",
            Accel::Tcg => "TCG (no vmx/svm on this host CPU; -cpu max,vendor=GenuineIntel)",
        }
    }
}

/// How QEMU's serial console is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// The user's terminal, multiplexed with the QEMU monitor (Ctrl-A c).
    Terminal,
    /// Pipes, read and written by a program ([`Machine`]).
    Piped,
}

/// Everything that varies between runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub firmware: Firmware,
    pub image: PathBuf,
    pub pmem: PathBuf,
    pub pmem_size: u64,
    pub qmp: Option<PathBuf>,
    pub cmdline: String,
    pub accel: Accel,
    pub console: Console,
    /// Extra QEMU arguments, appended as they are.
    pub extra: Vec<String>,
}

impl RunOptions {
    pub fn new(firmware: Firmware, image: PathBuf, pmem: PathBuf) -> Self {
        RunOptions {
            firmware,
            image,
            pmem,
            pmem_size: DEFAULT_PMEM_SIZE,
            qmp: None,
            cmdline: String::from("shell"),
            accel: Accel::detect(),
            console: Console::Piped,
            extra: Vec::new(),
        }
    }
}

/// Parses a size such as `256M`, `1G`, `4096` or `2MiB` (the project's one
/// size parser, `fsdax_pmem_api::units`).
pub fn parse_size(s: &str) -> Result<u64> {
    fsdax_pmem_api::units::parse_size(s).map_err(|e| anyhow!("size {s:?}: {e}"))
}

/// Creates the NVDIMM backing file (sparse) if it is missing. An existing
/// file is never truncated: a smaller one is an error, so no data is lost.
pub fn ensure_pmem_file(path: &Path, size: u64) -> Result<()> {
    if size == 0 || !size.is_multiple_of(2 << 20) {
        bail!("NVDIMM size must be a non-zero multiple of 2 MiB (got {size})");
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() >= size => Ok(()),
        Ok(meta) => bail!(
            "NVDIMM backing file {} has {} bytes, less than the requested {size}; \
             pick another --pmem path or a size of at most {}",
            path.display(),
            meta.len(),
            meta.len()
        ),
        Err(_) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("creating NVDIMM backing file {}", path.display()))?;
            f.set_len(size)?;
            Ok(())
        }
    }
}

/// The OVMF firmware image, if installed.
pub fn ovmf_path() -> Option<PathBuf> {
    ["/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF.fd", "/usr/share/qemu/OVMF.fd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The QEMU binary, or a clear error saying how to install it.
pub fn qemu_binary() -> Result<PathBuf> {
    let name = "qemu-system-x86_64";
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow!(
                "{name} not found: install it with \
                 `apt-get install --no-install-recommends qemu-system-x86` (the README's commands do)"
            )
        })
}

/// Escapes a value for QEMU's comma-separated option syntax.
fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// The machine of `qemu/pc-nvdimm.args`: every option except those named in
/// `skip`, with the `{placeholders}` of `fills` filled in. The Linux
/// reference guest uses it too, so both systems run on the same machine.
pub fn config_args(fills: &[(&str, String)], skip: &[&str]) -> Result<Vec<String>> {
    let config_path = workspace_root().join("qemu").join("pc-nvdimm.args");
    let config = std::fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?;
    let mut args = Vec::new();
    for line in config.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (opt, value) = match line.split_once(char::is_whitespace) {
            Some((o, v)) => (o, Some(v.trim())),
            None => (line, None),
        };
        if skip.contains(&opt) {
            continue;
        }
        args.push(opt.to_string());
        if let Some(v) = value {
            let mut v = v.to_string();
            for (k, fill) in fills {
                v = v.replace(k, fill);
            }
            args.push(v);
        }
    }
    Ok(args)
}

/// An absolute path escaped for QEMU's option syntax.
pub fn qemu_path(p: &Path) -> Result<String> {
    Ok(qemu_escape(&std::path::absolute(p)?.to_string_lossy()))
}

/// The placeholders of the machine that do not depend on what boots:
/// accelerator, CPU, NVDIMM backing file and size.
pub fn machine_fills(accel: Accel, pmem: &Path, pmem_size: u64) -> Result<Vec<(&'static str, String)>> {
    Ok(vec![
        ("{accel}", accel.qemu_accel().to_string()),
        ("{cpu}", accel.qemu_cpu().to_string()),
        ("{pmem}", qemu_path(pmem)?),
        ("{pmem_size}", pmem_size.to_string()),
    ])
}

/// The arguments of `qemu/pc-nvdimm.args` with the placeholders filled in.
pub fn qemu_args(opts: &RunOptions) -> Result<Vec<String>> {
    let abs = qemu_path;
    let mut fills = machine_fills(opts.accel, &opts.pmem, opts.pmem_size)?;
    fills.push(("{disk}", abs(&opts.image)?));
    fills.push(("{cmdline}", qemu_escape(&opts.cmdline)));
    let mut args = config_args(&fills, &[])?;
    if opts.firmware == Firmware::Uefi {
        let ovmf = ovmf_path()
            .ok_or_else(|| anyhow!("OVMF not found: install it with `apt-get install --no-install-recommends ovmf`"))?;
        args.push("-bios".into());
        args.push(ovmf.to_string_lossy().into_owned());
    }
    if let Some(qmp) = &opts.qmp {
        args.push("-qmp".into());
        args.push(format!("unix:{},server=on,wait=off", abs(qmp)?));
    }
    args.push("-serial".into());
    args.push(match opts.console {
        Console::Terminal => "mon:stdio".into(),
        Console::Piped => "stdio".into(),
    });
    if opts.console == Console::Piped {
        args.push("-monitor".into());
        args.push("none".into());
    }
    args.extend(opts.extra.iter().cloned());
    Ok(args)
}

/// The full QEMU command for `opts` (creates the pmem file if missing).
pub fn qemu_command(opts: &RunOptions) -> Result<Command> {
    ensure_pmem_file(&opts.pmem, opts.pmem_size)?;
    let mut cmd = Command::new(qemu_binary()?);
    cmd.args(qemu_args(opts)?);
    Ok(cmd)
}

/// How a program run with the `exec` command line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramOutcome {
    /// It ended; its status as a shell reports it.
    Ended(u8),
    /// The kernel ended QEMU otherwise (panic, fatal machine check): QEMU's
    /// exit status.
    Kernel(i32),
}

/// The status in an `exec status: N (...)` line.
pub fn parse_exec_status(line: &str) -> Option<u8> {
    let rest = line.trim().strip_prefix(crate::EXEC_STATUS_PREFIX)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Whether a console line is the kernel's (a log line or a process report)
/// rather than the program's output.
fn kernel_line(line: &str) -> bool {
    let log = line.starts_with('[')
        && line.split(']').nth(1).is_some_and(|r| {
            let r = r.trim_start();
            ["INFO", "WARN", "ERROR", "DEBUG"].iter().any(|l| r.starts_with(l))
        });
    log || line.starts_with("fsdax ") || line.starts_with("mounted pmem0") || line.starts_with("pmem0 is not mounted")
}

/// Boots `opts` (an `exec ...` command line) and streams the console: the
/// program's lines to stdout, the kernel's to stderr; returns how it ended.
pub fn run_program(opts: &RunOptions) -> Result<ProgramOutcome> {
    use std::io::BufRead;
    let mut opts = opts.clone();
    opts.console = Console::Piped;
    let mut cmd = qemu_command(&opts)?;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("starting QEMU")?;
    let stdout = child.stdout.take().expect("piped");
    let mut status = None;
    let mut reader = std::io::BufReader::new(stdout);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&raw).replace('\r', "");
        let text = line.trim_end_matches('\n');
        if let Some(s) = parse_exec_status(text) {
            status = Some(s);
            eprintln!("{text}");
        } else if kernel_line(text) {
            eprintln!("{text}");
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
    let exit = child.wait()?;
    let code = exit.code().unwrap_or(-1);
    Ok(match (status, crate::ExitCode::from_qemu_status(code)) {
        (Some(s), Some(crate::ExitCode::ProgramEnded)) => ProgramOutcome::Ended(s),
        _ => ProgramOutcome::Kernel(code),
    })
}

/// A running QEMU whose serial console is read and written by the caller.
///
/// Everything the kernel prints is kept; [`Machine::wait_for`] waits until a
/// pattern appears after a cursor that moves forward, so a test reads the
/// console like a person would. QEMU is killed when the `Machine` is dropped.
#[derive(Debug)]
pub struct Machine {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<(Mutex<Output>, Condvar)>,
    cursor: usize,
    started: Instant,
}

#[derive(Debug, Default)]
struct Output {
    bytes: Vec<u8>,
    closed: bool,
}

impl Machine {
    /// Starts QEMU with a piped console.
    pub fn start(opts: &RunOptions) -> Result<Machine> {
        let mut opts = opts.clone();
        opts.console = Console::Piped;
        Machine::spawn(qemu_command(&opts)?)
    }

    /// Starts a QEMU command whose serial console is on stdio.
    pub fn spawn(mut cmd: Command) -> Result<Machine> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting QEMU")?;
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let output = Arc::clone(&output);
            std::thread::spawn(move || pump(stream, &output));
        }
        Ok(Machine { stdin: child.stdin.take(), child, output, cursor: 0, started: Instant::now() })
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything the console printed so far (lossy UTF-8).
    pub fn transcript(&self) -> String {
        let out = self.output.0.lock().expect("output lock");
        String::from_utf8_lossy(&out.bytes).into_owned()
    }

    /// Waits until `pattern` appears after the cursor; returns the text from
    /// the cursor to the end of the match and moves the cursor past it.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.output;
        let mut out = lock.lock().expect("output lock");
        loop {
            if let Some(pos) = find(&out.bytes[self.cursor..], pattern.as_bytes()) {
                let end = self.cursor + pos + pattern.len();
                let text = String::from_utf8_lossy(&out.bytes[self.cursor..end]).into_owned();
                self.cursor = end;
                return Ok(text);
            }
            let now = Instant::now();
            if out.closed || now >= deadline {
                let tail = String::from_utf8_lossy(&out.bytes[self.cursor..]).into_owned();
                bail!(
                    "{} waiting for {pattern:?}; console after the cursor:\n{tail}",
                    if out.closed { "QEMU exited" } else { "timed out" }
                );
            }
            out = cvar.wait_timeout(out, deadline - now).expect("output lock").0;
        }
    }

    /// Types `line` and Enter into the serial console.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("console input closed"))?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\r")?;
        stdin.flush()?;
        Ok(())
    }

    /// Sends raw bytes to the serial console.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("console input closed"))?;
        stdin.write_all(bytes)?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits for QEMU to exit; kills it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Let the pump threads drain what is left.
                let (lock, cvar) = &*self.output;
                let out = lock.lock().expect("output lock");
                let _ = cvar.wait_timeout_while(out, Duration::from_secs(2), |o| !o.closed);
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                bail!("QEMU did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pump(mut stream: Box<dyn Read + Send>, output: &(Mutex<Output>, Condvar)) {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        let mut out = output.0.lock().expect("output lock");
        if n == 0 {
            out.closed = true;
            output.1.notify_all();
            return;
        }
        // The serial console ends lines with \r\n; readers want \n.
        out.bytes.extend(buf[..n].iter().copied().filter(|&b| b != b'\r'));
        output.1.notify_all();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_status_lines_parse() {
        assert_eq!(parse_exec_status("exec status: 139 (killed by SIGSEGV)"), Some(139));
        assert_eq!(parse_exec_status("exec status: 0 (exit 0)\n"), Some(0));
        assert_eq!(parse_exec_status("exit 0"), None);
        assert!(kernel_line("[    1.234567] INFO  memory: ..."));
        assert!(!kernel_line("hello from pid 5: argc=1"));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn config_placeholders_are_filled() {
        let mut opts = RunOptions::new(Firmware::Bios, "/tmp/x.img".into(), "/tmp/p,m.img".into());
        opts.accel = Accel::Tcg;
        opts.cmdline = "test a,b".into();
        let args = qemu_args(&opts).unwrap();
        assert!(args.iter().all(|a| !a.contains('{')), "unfilled placeholder in {args:?}");
        assert!(args.contains(&"max,vendor=GenuineIntel".to_string()));
        assert!(args.iter().any(|a| a.contains("mem-path=/tmp/p,,m.img,size=268435456")));
        assert!(args.iter().any(|a| a == "name=opt/fsdax/cmdline,string=test a,,b"));
    }

    #[test]
    fn existing_pmem_file_is_never_shrunk() {
        let dir = std::env::temp_dir().join(format!("fsdax-pmem-{}", std::process::id()));
        let path = dir.join("pmem.img");
        let _ = std::fs::remove_file(&path);
        ensure_pmem_file(&path, 4 << 20).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 << 20);
        // A bigger request than the file is an error, not a resize.
        assert!(ensure_pmem_file(&path, 8 << 20).is_err());
        // A smaller request uses the file as it is.
        ensure_pmem_file(&path, 2 << 20).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 << 20);
        assert!(ensure_pmem_file(&path, 3 << 20).is_err(), "not a 2 MiB multiple");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
