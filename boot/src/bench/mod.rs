//! `fsdax bench --linux-only | --vs-linux`: the same static benchmark binary
//! (`user/c/bench.c`) on fsdax and on Linux 6.1 XFS-DAX, in the same QEMU
//! machine, rounds alternating the systems; then medians, ratios, and
//! `bench.json`, `bench.md` and `bench.png` under `target/fsdax/bench/`.
//!
//! Each system is a [`System`]: it prepares once (build, download) and then
//! runs one round, handing back the benchmark's JSON lines. [`Linux`] boots
//! Debian's kernel with an initramfs (`crate::linux`); [`Fsdax`] will boot
//! the fsdax image with the benchmark on its file system once the kernel
//! runs user programs, and until then says so.

pub mod plot;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::linux::{self, LinuxGuest};
use crate::qemu::{self, Accel, Machine};
use crate::{output_dir, user};

/// NVDIMM size of the benchmark machine, for both systems.
pub const BENCH_PMEM_SIZE: u64 = 1 << 30;

/// What a run measures.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// `--size` of the benchmark program.
    pub size: u64,
    pub rounds: usize,
    /// `--only` of the benchmark program.
    pub only: Option<String>,
    pub out_dir: PathBuf,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions { size: 256 << 20, rounds: 3, only: None, out_dir: output_dir().join("bench") }
    }
}

/// A system the benchmark binary runs on.
pub trait System {
    /// `fsdax` or `linux`: the key in the reports.
    fn name(&self) -> &'static str;
    /// Builds or downloads what the rounds need.
    fn prepare(&mut self, bench: &Path, progress: &dyn Fn(&str)) -> Result<()>;
    /// Boots, runs the benchmark once, powers off; calls `line` for every
    /// JSON line as it arrives and returns them all.
    fn run_round(&mut self, round: usize, opts: &BenchOptions, line: &mut dyn FnMut(&Value)) -> Result<Vec<Value>>;
}

/// fsdax: runs `bench` from its own file system once the kernel has the
/// file-system calls it makes.
#[derive(Debug, Default)]
pub struct Fsdax;

impl Fsdax {
    /// Why fsdax cannot run the benchmark program yet (`None` once it can).
    pub fn not_ready() -> Option<&'static str> {
        Some(
            "the fsdax kernel runs user programs (`./fsdax exec`) but not yet the file-system \
             calls the benchmark makes (openat, pwrite64, fsync, ...); its kernel-side figures \
             come from `./fsdax bench`",
        )
    }
}

impl System for Fsdax {
    fn name(&self) -> &'static str {
        "fsdax"
    }

    fn prepare(&mut self, _bench: &Path, _progress: &dyn Fn(&str)) -> Result<()> {
        match Fsdax::not_ready() {
            Some(why) => bail!("{why}"),
            None => Ok(()),
        }
    }

    fn run_round(&mut self, _round: usize, _opts: &BenchOptions, _line: &mut dyn FnMut(&Value)) -> Result<Vec<Value>> {
        bail!("{}", Fsdax::not_ready().unwrap_or("fsdax rounds are not wired up"))
    }
}

/// Linux 6.1 XFS-DAX (`reflink=1,rmapbt=1`, `-o dax=always`) on the same machine.
#[derive(Debug, Default)]
pub struct Linux {
    guest: Option<LinuxGuest>,
}

/// Longest silence from the guest before a round is given up (the CoW of a
/// 256 MiB clone through mmap takes about a minute under TCG).
const LINE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl System for Linux {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn prepare(&mut self, bench: &Path, progress: &dyn Fn(&str)) -> Result<()> {
        self.guest = Some(linux::prepare(bench, progress)?);
        Ok(())
    }

    fn run_round(&mut self, round: usize, opts: &BenchOptions, line: &mut dyn FnMut(&Value)) -> Result<Vec<Value>> {
        let guest = self.guest.as_ref().context("Linux::prepare was not called")?;
        let pmem = linux::cache_dir().join("pmem.img");
        qemu::ensure_pmem_file(&pmem, BENCH_PMEM_SIZE)?;
        let fills = qemu::machine_fills(Accel::detect(), &pmem, BENCH_PMEM_SIZE)?;
        let mut args = qemu::config_args(&fills, &["-drive", "-fw_cfg"])?;
        let mut append = format!("console=ttyS0 loglevel=3 panic=-1 fsdax_size={}M", opts.size >> 20);
        if let Some(only) = &opts.only {
            append.push_str(&format!(" fsdax_only={only}"));
        }
        args.extend(["-kernel".into(), qemu::qemu_path(&guest.kernel)?]);
        args.extend(["-initrd".into(), qemu::qemu_path(&guest.initramfs)?]);
        args.extend(["-append".into(), append]);
        args.extend(["-serial".into(), "stdio".into(), "-monitor".into(), "none".into()]);
        let mut cmd = std::process::Command::new(qemu::qemu_binary()?);
        cmd.args(&args);
        let mut m = Machine::spawn(cmd)?;
        let log = opts.out_dir.join(format!("linux-round-{round}.log"));
        let result = read_round(&mut m, line);
        let _ = std::fs::write(&log, m.transcript());
        let lines = result.with_context(|| format!("Linux round {round} (console log: {})", log.display()))?;
        m.wait_exit(Duration::from_secs(60))?;
        Ok(lines)
    }
}

fn read_round(m: &mut Machine, line: &mut dyn FnMut(&Value)) -> Result<Vec<Value>> {
    let mut lines = Vec::new();
    loop {
        let text = m.wait_for("\n", LINE_TIMEOUT)?;
        let text = text.trim();
        if let Some(status) = text.strip_prefix("@@fsdax ") {
            if let Some(err) = status.strip_prefix("error: ") {
                bail!("the guest failed: {err}");
            }
            if status == "done" {
                return Ok(lines);
            }
            eprintln!("fsdax bench:   linux: {status}");
        } else if let Some(json) = text.find("{\"bench\"").map(|i| &text[i..]) {
            let v: Value = serde_json::from_str(json).with_context(|| format!("a garbled benchmark line: {json}"))?;
            line(&v);
            lines.push(v);
        }
    }
}

/// Runs `opts.rounds` rounds over `systems` (the order alternates each
/// round), writes the reports and returns the markdown table.
pub fn run(systems: &mut [Box<dyn System>], not_measured: &[(&str, &str)], opts: &BenchOptions) -> Result<String> {
    let started = Instant::now();
    let progress = |s: &str| eprintln!("fsdax bench: {s}");
    std::fs::create_dir_all(&opts.out_dir)?;
    let user_dir = user::build_all()?;
    let bench = user_dir.join("bench");
    for s in systems.iter_mut() {
        progress(&format!("preparing {}", s.name()));
        s.prepare(&bench, &progress)?;
    }
    let mut results = report::Results::default();
    for round in 1..=opts.rounds {
        let order: Vec<usize> =
            if round % 2 == 1 { (0..systems.len()).collect() } else { (0..systems.len()).rev().collect() };
        for i in order {
            let system = &mut systems[i];
            let name = system.name();
            progress(&format!(
                "round {round}/{}: {name} (size {} MiB; {:.0} s so far)",
                opts.rounds,
                opts.size >> 20,
                started.elapsed().as_secs_f64()
            ));
            let mut n = 0;
            let lines = system.run_round(round, opts, &mut |v: &Value| {
                n += 1;
                eprintln!("fsdax bench:   {name:<6} {:<22} {}", v["bench"].as_str().unwrap_or("?"), summary(v));
            })?;
            for (order, v) in lines.iter().enumerate() {
                results.add(name, round, order, v);
            }
        }
    }
    let setup = report::Setup {
        size: opts.size,
        rounds: opts.rounds,
        machine: format!("qemu/pc-nvdimm.args, {}, NVDIMM {} MiB", Accel::detect().describe(), BENCH_PMEM_SIZE >> 20),
        not_measured: not_measured.iter().map(|(s, w)| (s.to_string(), w.to_string())).collect(),
        wall_secs: started.elapsed().as_secs_f64(),
    };
    let json = report::to_json(&results, &setup);
    std::fs::write(opts.out_dir.join("bench.json"), serde_json::to_string_pretty(&json)? + "\n")?;
    let md = report::to_markdown(&results, &setup);
    std::fs::write(opts.out_dir.join("bench.md"), &md)?;
    let note = if not_measured.is_empty() {
        format!("{} round(s), size {} MiB; bars above 1.0: fsdax better", opts.rounds, opts.size >> 20)
    } else {
        format!(
            "not measured: {}; no ratios until both systems run",
            not_measured.iter().map(|(s, _)| *s).collect::<Vec<_>>().join(", ")
        )
    };
    plot::ratios_png(
        &report::rows(&results),
        "fsdax vs Linux 6.1 XFS-DAX, same QEMU",
        &note,
        &opts.out_dir.join("bench.png"),
    )?;
    progress(&format!(
        "wrote {}/bench.{{json,md,png}} in {:.0} s",
        opts.out_dir.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(md)
}

/// The primary figure of a benchmark line, for progress output.
fn summary(v: &Value) -> String {
    if let Some(why) = v["skipped"].as_str() {
        return format!("skipped: {why}");
    }
    let unit = match v["primary"].as_str() {
        Some("ops_per_s") => report::Unit::OpsPerSec,
        Some("bytes_per_s") => report::Unit::BytesPerSec,
        _ => report::Unit::Secs,
    };
    let value = unit.format(v[v["primary"].as_str().unwrap_or("secs")].as_f64().unwrap_or(0.0));
    match v["minflt"].as_i64() {
        Some(f) => {
            format!("{value} ({} faults)", report::Unit::Faults.format((f + v["majflt"].as_i64().unwrap_or(0)) as f64))
        }
        None => value,
    }
}
