//! `fsdax bench [--vs-linux | --linux-only]`: the same static benchmark
//! binary (`user/c/bench.c`) on fsdax and/or on Linux 6.1 XFS-DAX, in the
//! same QEMU machine, rounds alternating the systems; then medians, ratios,
//! the goals, and `bench.json`, `bench.md` and `bench.png` under
//! `target/fsdax/bench/`.
//!
//! Each system is a [`System`] (`crate::system`): it prepares once (build,
//! download) and boots once per round with a fresh file system, running
//! `bench` on it; the round hands back the benchmark's JSON lines. A system
//! with its own raw copy benchmark (fsdax: the kernel's `bench pmem`) runs
//! it in a boot of its own after each of its rounds, on a scratch NVDIMM:
//! the reference rows the 2 MiB file paths are held against.

pub mod plot;
pub mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::qemu::{Accel, Machine};
use crate::system::{BootSpec, PMEM_SIZE, STATUS_PREFIX};
pub use crate::system::{Fsdax, Linux, System};
use crate::{output_dir, user};

/// NVDIMM size of the benchmark machine, for both systems.
pub const BENCH_PMEM_SIZE: u64 = PMEM_SIZE;

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

/// Longest silence from the guest before a round is given up (the CoW of a
/// 256 MiB clone through mmap takes about a minute under TCG).
const LINE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Boots `system` once with a fresh file system, runs the benchmark on it,
/// calls `line` for every JSON line as it arrives and returns them all.
fn run_round(
    system: &mut dyn System,
    round: usize,
    opts: &BenchOptions,
    line: &mut dyn FnMut(&Value),
) -> Result<Vec<Value>> {
    let name = system.name();
    let mut command = vec!["bench".to_string(), "--size".to_string(), format!("{}M", opts.size >> 20)];
    if let Some(only) = &opts.only {
        command.extend(["--only".to_string(), only.clone()]);
    }
    command.push("{dir}".into());
    let spec = BootSpec::new(command, opts.out_dir.join(format!("{name}-pmem.img")));
    let mut m = system.boot(&spec)?;
    let log = opts.out_dir.join(format!("{name}-round-{round}.log"));
    let result = read_round(&mut m, name, line);
    let _ = std::fs::write(&log, m.transcript());
    let lines = result.with_context(|| format!("{name} round {round} (console log: {})", log.display()))?;
    m.wait_exit(Duration::from_secs(60))?;
    Ok(lines)
}

/// The raw copy figures of the reference rows: (row, the benchmark's
/// `name` at 2 MiB). What the 2 MiB write and read paths are held against.
pub const RAW_COPY_ROWS: [(&str, &str); 2] =
    [("pmem_write_2m (kernel)", "write_nt"), ("pmem_read_2m (kernel)", "read_mc")];

/// Boots `system`'s raw copy benchmark, if it has one, and returns its JSON
/// lines (empty if it has none).
fn run_raw_copy(system: &mut dyn System, round: usize, opts: &BenchOptions) -> Result<Vec<Value>> {
    let name = system.name();
    let pmem = opts.out_dir.join(format!("{name}-raw-pmem.img"));
    let Some((mut m, how)) = system.boot_raw_copy_bench(&pmem)? else { return Ok(Vec::new()) };
    let log = opts.out_dir.join(format!("{name}-raw-round-{round}.log"));
    let done = m.wait_for(how.done, LINE_TIMEOUT);
    let _ = std::fs::write(&log, m.transcript());
    done.with_context(|| format!("{name} raw copy benchmark, round {round} (console log: {})", log.display()))?;
    m.wait_exit(Duration::from_secs(60))?;
    let mut lines = Vec::new();
    for text in m.transcript().lines() {
        if let Some(i) = text.find(how.line_prefix) {
            let json = &text[i..];
            let v: Value = serde_json::from_str(json.trim())
                .with_context(|| format!("a garbled raw copy line: {json} (console log: {})", log.display()))?;
            lines.push(v);
        }
    }
    if lines.is_empty() {
        bail!("{name}'s raw copy benchmark printed no measurement (console log: {})", log.display());
    }
    Ok(lines)
}

fn read_round(m: &mut Machine, name: &str, line: &mut dyn FnMut(&Value)) -> Result<Vec<Value>> {
    let mut lines = Vec::new();
    loop {
        let text = m.wait_for("\n", LINE_TIMEOUT)?;
        let text = text.trim();
        if let Some(status) = text.strip_prefix(STATUS_PREFIX) {
            if let Some(err) = status.strip_prefix("error: ") {
                bail!("the guest failed: {err}");
            }
            if status == "done" {
                return Ok(lines);
            }
            eprintln!("fsdax bench:   {name}: {status}");
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
    for s in systems.iter_mut() {
        progress(&format!("preparing {}", s.name()));
        s.prepare(&user_dir, &progress)?;
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
            let lines = run_round(system.as_mut(), round, opts, &mut |v: &Value| {
                n += 1;
                eprintln!("fsdax bench:   {name:<6} {:<22} {}", v["bench"].as_str().unwrap_or("?"), summary(v));
            })?;
            for (order, v) in lines.iter().enumerate() {
                results.add(name, round, order, v);
            }
            let raw = run_raw_copy(system.as_mut(), round, opts)?;
            for (row, bench) in RAW_COPY_ROWS {
                let v = raw
                    .iter()
                    .find(|v| v["name"] == bench && v["size"] == 2 << 20)
                    .and_then(|v| v["bytes_per_s"].as_f64());
                if let Some(v) = v {
                    eprintln!("fsdax bench:   {name:<6} {row:<22} {}", report::Unit::BytesPerSec.format(v));
                    results.add_reference(name, row, v);
                }
            }
            for v in &raw {
                results.add_raw(name, round, v);
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
    let compared: Vec<report::Row> = report::rows(&results).into_iter().filter(|r| !r.reference).collect();
    plot::ratios_png(&compared, "fsdax vs Linux 6.1 XFS-DAX, same QEMU", &note, &opts.out_dir.join("bench.png"))?;
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
