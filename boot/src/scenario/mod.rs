//! `fsdax scenario`: the DAX and memory-failure scenario programs
//! (`user/c/scen_dax.c`, `user/c/scen_mf.c`) on a [`System`], each in its
//! own boot (two for the crash and reboot scenarios), with the host doing
//! what the programs ask on the console (`protocol`): machine checks
//! through QMP (`human-monitor-command` `mce -b ...`), an immediate stop
//! (QMP `quit`) for the crash test, then the next boot on the same NVDIMM.
//!
//! Results go to `target/fsdax/scenarios/`: `scenarios.json` (every result
//! line, injection, kernel log line and status, merged with earlier runs of
//! other scenarios), `scenarios.md` (the tables), and the console of every
//! boot under `logs/`.

pub mod protocol;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use self::protocol::{Line, Status};
use crate::qemu::{Accel, Machine};
use crate::qmp::Qmp;
use crate::system::{BootSpec, FsLayout, System, PMEM_SIZE};
use crate::{output_dir, user};

/// One boot of a scenario: a program, its arguments (the file system's
/// directory is appended), and how the boot ends.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub program: &'static str,
    pub args: &'static [&'static str],
    /// Make a fresh file system (the first phase); later phases mount what
    /// the NVDIMM holds.
    pub fresh_fs: bool,
    /// The program ends the boot with `@@CRASH` (the host stops the machine)
    /// instead of exiting.
    pub crash: bool,
}

/// A named scenario: one or more boots.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub what: &'static str,
    pub layout: FsLayout,
    pub phases: &'static [Phase],
}

const fn one(program: &'static str, args: &'static [&'static str]) -> [Phase; 1] {
    [Phase { program, args, fresh_fs: true, crash: false }]
}

macro_rules! single {
    ($name:expr, $what:expr, $layout:expr, $program:expr, $args:expr) => {
        Scenario { name: $name, what: $what, layout: $layout, phases: &one($program, $args) }
    };
}

use FsLayout::{Aligned2M, Default as DefaultLayout};

/// Every scenario, in report order.
pub const SCENARIOS: &[Scenario] = &[
    single!(
        "dax_basic",
        "reads of holes, mmap/pread/pwrite coherence, reflink CoW through mmap, raw device mmap",
        DefaultLayout,
        "scen_dax",
        &["--device", "{device}", "hole_read,coherence,reflink_cow,raw_device"]
    ),
    single!(
        "first_touch",
        "first touch of a 256 MiB mapping (written, sparse), also on an aged file system",
        DefaultLayout,
        "scen_dax",
        &["first_touch,first_touch_aged"]
    ),
    single!(
        "first_touch_2m",
        "first touch of a 256 MiB mapping on a file system laid out for 2 MiB mappings",
        Aligned2M,
        "scen_dax",
        &["first_touch"]
    ),
    single!(
        "truncate_race",
        "1,000 truncates while another process faults the truncated range",
        DefaultLayout,
        "scen_dax",
        &["truncate_race"]
    ),
    single!(
        "raw_device",
        "mmap 256 MiB of the raw device (on fsdax with the file system unmounted), read every page; stores vs pread/pwrite",
        DefaultLayout,
        "scen_dax",
        &["{raw}", "--device", "{device}", "raw_device,raw_device_rw"]
    ),
    single!(
        "raw_device_1g",
        "mmap all 1 GiB of the raw device (on fsdax with the file system unmounted), read every page",
        DefaultLayout,
        "scen_dax",
        &["{raw}", "--device", "{device}", "--size", "1G", "raw_device"]
    ),
    single!("freeze", "FIFREEZE while processes store through mappings", DefaultLayout, "scen_dax", &["freeze"]),
    single!("freeze_2m", "the same on a file system laid out for 2 MiB mappings", Aligned2M, "scen_dax", &["freeze"]),
    Scenario {
        name: "map_sync_crash",
        what: "MAP_SYNC stores into a truncated-up file, the machine stopped at once, then a reboot",
        layout: DefaultLayout,
        phases: &[
            Phase { program: "scen_dax", args: &["map_sync_write"], fresh_fs: true, crash: true },
            Phase { program: "scen_dax", args: &["map_sync_verify"], fresh_fs: false, crash: false },
        ],
    },
    single!(
        "xfs550_madvise",
        "xfs/550 layout (one file), MADV_HWPOISON",
        DefaultLayout,
        "scen_mf",
        &["xfs550_madvise"]
    ),
    single!(
        "xfs550_ar",
        "xfs/550 layout, action-required machine check on the spinning poisoner",
        DefaultLayout,
        "scen_mf",
        &["xfs550_ar"]
    ),
    single!("xfs550_ao", "xfs/550 layout, action-optional machine check", DefaultLayout, "scen_mf", &["xfs550_ao"]),
    single!(
        "xfs551_madvise",
        "xfs/551 layout (the poison file is a reflink copy), MADV_HWPOISON",
        DefaultLayout,
        "scen_mf",
        &["xfs551_madvise"]
    ),
    single!(
        "xfs551_ar",
        "xfs/551 layout, action-required machine check on the spinning poisoner",
        DefaultLayout,
        "scen_mf",
        &["xfs551_ar"]
    ),
    single!("xfs551_ao", "xfs/551 layout, action-optional machine check", DefaultLayout, "scen_mf", &["xfs551_ao"]),
    single!(
        "xfs552_madvise",
        "xfs/552 layout (16 pages, even pages shared), MADV_HWPOISON",
        DefaultLayout,
        "scen_mf",
        &["xfs552_madvise"]
    ),
    single!(
        "xfs552_ar",
        "xfs/552 layout, action-required machine check on the spinning poisoner",
        DefaultLayout,
        "scen_mf",
        &["xfs552_ar"]
    ),
    single!("xfs552_ao", "xfs/552 layout, action-optional machine check", DefaultLayout, "scen_mf", &["xfs552_ao"]),
    single!(
        "dax_poison",
        "ndctl dax-poison: 2 MiB-aligned MAP_SYNC|MAP_POPULATE mapping, poison at 1 MiB, punch, rewrite",
        DefaultLayout,
        "scen_mf",
        &["dax_poison"]
    ),
    single!(
        "dax_poison_2m",
        "the same on a file system laid out for 2 MiB mappings",
        Aligned2M,
        "scen_mf",
        &["dax_poison"]
    ),
    single!(
        "raw_poison",
        "MADV_HWPOISON in /dev/pmem0 mapped twice with 2 MiB pages (on fsdax unmounted)",
        DefaultLayout,
        "scen_mf",
        &["{raw}", "--device", "{device}", "raw_poison"]
    ),
    single!(
        "madvise_untouched",
        "MADV_HWPOISON of a mapped page never touched (faulted in first, as Linux does), pread, map, again",
        DefaultLayout,
        "scen_mf",
        &["madvise_untouched"]
    ),
    Scenario {
        name: "recovery",
        what: "poison, pread, a whole-page pwrite (recovery write), map again; after a reboot, pread again",
        layout: DefaultLayout,
        phases: &[
            Phase { program: "scen_mf", args: &["recovery"], fresh_fs: true, crash: false },
            Phase { program: "scen_mf", args: &["recovery_verify"], fresh_fs: false, crash: false },
        ],
    },
];

/// The scenarios named (`all` for every one), in catalogue order.
pub fn select(names: &[String]) -> Result<Vec<&'static Scenario>> {
    if names.is_empty() {
        bail!("name the scenarios to run, or `all` (`fsdax scenario --list` lists them)");
    }
    for n in names {
        if n != "all" && !SCENARIOS.iter().any(|s| s.name == n) {
            bail!("no scenario {n:?} (`fsdax scenario --list` lists them)");
        }
    }
    Ok(SCENARIOS.iter().filter(|s| names.iter().any(|n| n == "all" || n == s.name)).collect())
}

/// Longest silence on the console before a boot is given up.
const LINE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Where the results go.
pub fn default_out_dir() -> PathBuf {
    output_dir().join("scenarios")
}

/// What one boot did.
#[derive(Debug, Default)]
struct PhaseRun {
    results: Vec<Value>,
    injections: Vec<Value>,
    dmesg: Vec<String>,
    ready: Option<String>,
    exit: Option<i32>,
    fsck: Option<String>,
    crashed_on_request: bool,
    problem: Option<String>,
}

/// Boots `system` for one phase and does what the program asks until the
/// boot ends. Problems of the guest (a panic, a timeout, a missing status)
/// are recorded, not returned: only a host failure is an `Err`.
fn run_phase(
    system: &mut dyn System,
    spec: &BootSpec,
    phase: &Phase,
    label: &str,
    log: &Path,
    progress: &dyn Fn(&str),
) -> Result<PhaseRun> {
    let mut run = PhaseRun::default();
    let qmp_path = spec.qmp.clone().context("a scenario boot needs a QMP socket")?;
    let mut m = system.boot(spec)?;
    let result = drive(&mut m, &qmp_path, label, &mut run, progress);
    if let Err(e) = result {
        run.problem.get_or_insert_with(|| format!("{e:#}"));
    }
    if !run.crashed_on_request {
        if let Err(e) = m.wait_exit(Duration::from_secs(60)) {
            run.problem.get_or_insert_with(|| format!("{e:#}"));
        }
    }
    let transcript = m.transcript();
    if run.problem.is_none() {
        if phase.crash && !run.crashed_on_request {
            run.problem = Some("the program never asked for the crash (@@CRASH)".into());
        } else if !phase.crash && run.exit.is_none() {
            run.problem = Some("the program's exit status never came".into());
        }
    }
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(log, transcript)?;
    let _ = std::fs::remove_file(&qmp_path);
    Ok(run)
}

/// Raises the machine check of `req`. An action-required one is what a
/// load by the spinning program raises, so it must arrive while the CPU runs
/// in user mode: the machine is stopped (QMP `stop`), its CS checked (`info
/// registers`), and resumed until it stopped in user mode; then the check is
/// queued and the machine resumed, so it arrives at that very instruction.
/// (Arriving in the kernel instead, it is fatal on any system.) An
/// action-optional one goes at once. Returns the `mce` command's reply
/// (empty on success) and how many stops it took.
fn inject(qmp: &mut Qmp, req: &protocol::InjectRequest) -> Result<(String, u32)> {
    let command = req.hmp_command();
    if req.kind == protocol::McKind::ActionOptional {
        return Ok((qmp.hmp(&command)?.trim().to_string(), 0));
    }
    // Let the requesting process fall asleep first.
    std::thread::sleep(Duration::from_millis(50));
    for stops in 1..=400u32 {
        qmp.execute("stop", json!({}))?;
        let user = protocol::user_mode(&qmp.hmp("info registers")?);
        if user == Some(true) {
            let reply = qmp.hmp(&command);
            qmp.execute("cont", json!({}))?;
            return Ok((reply?.trim().to_string(), stops));
        }
        qmp.execute("cont", json!({}))?;
        if user.is_none() {
            bail!("`info registers` shows no CS selector");
        }
        std::thread::sleep(Duration::from_millis(1 + u64::from(stops % 7)));
    }
    bail!("the CPU was in the kernel at each of 400 stops")
}

fn drive(m: &mut Machine, qmp_path: &Path, label: &str, run: &mut PhaseRun, progress: &dyn Fn(&str)) -> Result<()> {
    let mut qmp = Qmp::connect(qmp_path, Duration::from_secs(30)).context("connecting to QEMU's QMP socket")?;
    loop {
        let text = m.wait_for("\n", LINE_TIMEOUT)?;
        match protocol::parse_line(&text)? {
            Line::Inject(req) => {
                let at = m.elapsed().as_secs_f64();
                let t = Instant::now();
                let command = req.hmp_command();
                let (reply, stops) = match inject(&mut qmp, &req) {
                    Ok(done) => done,
                    Err(e) => (format!("{e:#}"), 0),
                };
                let host_ms = t.elapsed().as_secs_f64() * 1e3;
                let ok = reply.is_empty();
                if ok {
                    m.send_line(&format!("@@GO id={}", req.id))?;
                }
                progress(&format!(
                    "{label}: machine check {} at {:#x} ({})",
                    req.kind.name(),
                    req.phys,
                    if ok { "raised" } else { reply.as_str() }
                ));
                run.injections.push(json!({
                    "id": req.id, "kind": req.kind.name(), "phys": format!("{:#x}", req.phys), "cpu": req.cpu,
                    "hmp": command, "reply": reply, "acked": ok, "at_secs": at, "host_ms": host_ms,
                    "stops_until_user_mode": stops,
                }));
            }
            Line::Crash { .. } => {
                run.crashed_on_request = true;
                progress(&format!("{label}: the program asked for the crash; QMP quit"));
                let _ = qmp.execute("quit", json!({}));
                m.wait_exit(Duration::from_secs(30))?;
                return Ok(());
            }
            Line::Go { .. } | Line::Other => {}
            Line::Result(v) => {
                progress(&format!("{label}: {}", report::summarize_line(&v)));
                run.results.push(v);
            }
            Line::Panic(text) => {
                run.problem = Some(format!("the kernel panicked: {text}"));
                // Let the panic message reach the log; QEMU exits (-no-reboot).
                let _ = m.wait_exit(Duration::from_secs(10));
                return Ok(());
            }
            Line::Status(s) => match s {
                Status::Ready(r) => run.ready = Some(r),
                Status::Exit(n) => run.exit = Some(n),
                Status::Dmesg(l) => run.dmesg.push(l),
                Status::FsckClean => run.fsck = Some("clean".into()),
                Status::FsckErrors(e) => run.fsck = Some(format!("errors: {e}")),
                Status::Error(e) => {
                    progress(&format!("{label}: the system says: {e}"));
                    run.problem.get_or_insert(e);
                }
                Status::Done => return Ok(()),
                Status::Other(o) => progress(&format!("{label}: {o}")),
            },
        }
    }
}

/// Runs `scenario` on `system`: every phase, on one NVDIMM file. Returns the
/// scenario's result as JSON (see `report` for the fields).
fn run_scenario(
    system: &mut dyn System,
    scenario: &Scenario,
    out_dir: &Path,
    progress: &dyn Fn(&str),
) -> Result<Value> {
    let started = Instant::now();
    let name = system.name();
    let pmem = out_dir.join(format!("{name}-pmem.img"));
    // A socket path must stay short (108 bytes), so it lives in the temp directory.
    let qmp = std::env::temp_dir().join(format!("fsdax-scenario-{}-{name}.qmp", std::process::id()));
    let mut phases = Vec::new();
    let mut uname = None;
    for (i, phase) in scenario.phases.iter().enumerate() {
        let mut command = vec![phase.program.to_string()];
        command.extend(phase.args.iter().map(|a| a.to_string()));
        command.push("{dir}".into());
        let spec = BootSpec {
            command: command.clone(),
            pmem: pmem.clone(),
            mkfs: phase.fresh_fs,
            layout: scenario.layout,
            fsck: !phase.crash,
            qmp: Some(qmp.clone()),
        };
        let label = format!(
            "{name:<6} {}{}",
            scenario.name,
            if scenario.phases.len() > 1 { format!(" #{}", i + 1) } else { String::new() }
        );
        let log_name = format!("logs/{}-{name}-{}.log", scenario.name, i + 1);
        let t = Instant::now();
        let run = run_phase(system, &spec, phase, &label, &out_dir.join(&log_name), progress)?;
        uname = uname.or(run.ready.clone());
        let ended = if run.problem.is_some() {
            "problem"
        } else if run.crashed_on_request {
            "stopped on request"
        } else {
            "done"
        };
        if let Some(p) = &run.problem {
            progress(&format!("{label}: PROBLEM: {p}"));
        }
        let failed = run.problem.is_some();
        phases.push(json!({
            "command": command, "fresh_fs": phase.fresh_fs, "ended": ended, "problem": run.problem,
            "exit": run.exit, "fsck": run.fsck, "results": run.results, "injections": run.injections,
            "dmesg": run.dmesg, "log": log_name, "secs": t.elapsed().as_secs_f64(),
        }));
        if failed && i + 1 < scenario.phases.len() {
            break; // a later phase would check what an unfinished one left
        }
    }
    Ok(json!({
        "scenario": scenario.name,
        "what": scenario.what,
        "system": name,
        "layout": scenario.layout.name(),
        "ready": uname,
        "phases_planned": scenario.phases.len(),
        "phases": phases,
        "secs": started.elapsed().as_secs_f64(),
    }))
}

/// Runs `scenarios` on every system, writes `scenarios.json` and
/// `scenarios.md` into `out_dir` (merged with the results of other
/// scenarios from earlier runs) and returns the markdown.
pub fn run(systems: &mut [Box<dyn System>], scenarios: &[&Scenario], out_dir: &Path) -> Result<String> {
    let started = Instant::now();
    let progress = |s: &str| eprintln!("fsdax scenario: {s}");
    std::fs::create_dir_all(out_dir.join("logs"))?;
    let user_dir = user::build_all()?;
    for s in systems.iter_mut() {
        progress(&format!("preparing {}", s.name()));
        s.prepare(&user_dir, &progress)?;
    }
    let mut fresh = Vec::new();
    for (k, scenario) in scenarios.iter().enumerate() {
        for system in systems.iter_mut() {
            progress(&format!(
                "[{}/{}] {} on {} ({:.0} s so far)",
                k + 1,
                scenarios.len(),
                scenario.name,
                system.name(),
                started.elapsed().as_secs_f64()
            ));
            fresh.push(run_scenario(system.as_mut(), scenario, out_dir, &progress)?);
        }
    }
    let json_path = out_dir.join("scenarios.json");
    let earlier: Vec<Value> = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["results"].as_array().cloned())
        .unwrap_or_default();
    let order: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
    let results = report::merge(earlier, fresh, &order);
    let setup = report::Setup {
        machine: format!("qemu/pc-nvdimm.args, {}, NVDIMM {} MiB", Accel::detect().describe(), PMEM_SIZE >> 20),
        wall_secs: started.elapsed().as_secs_f64(),
        ran: scenarios.iter().map(|s| s.name.to_string()).collect(),
    };
    let doc =
        json!({"machine": setup.machine, "last_run_secs": setup.wall_secs, "last_run": setup.ran, "results": results});
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    let md = report::to_markdown(&results, &setup);
    std::fs::write(out_dir.join("scenarios.md"), &md)?;
    progress(&format!(
        "wrote {}/scenarios.{{json,md}} and logs/ in {:.0} s",
        out_dir.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        let mut names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCENARIOS.len(), "duplicate scenario names");
        for s in SCENARIOS {
            assert!(!s.phases.is_empty(), "{}", s.name);
            assert!(s.phases[0].fresh_fs, "{}: the first boot makes the file system", s.name);
            assert!(s.phases[1..].iter().all(|p| !p.fresh_fs), "{}: later boots keep it", s.name);
            let last = s.phases.last().unwrap();
            assert!(!last.crash, "{}: nothing would check what the crash left", s.name);
            for p in s.phases {
                assert!(user::program_names().contains(&p.program), "{}: {} is no user program", s.name, p.program);
            }
        }
    }

    #[test]
    fn selection() {
        assert_eq!(select(&["all".into()]).unwrap().len(), SCENARIOS.len());
        let s = select(&["recovery".into(), "dax_basic".into()]).unwrap();
        assert_eq!(s.iter().map(|s| s.name).collect::<Vec<_>>(), ["dax_basic", "recovery"], "catalogue order");
        assert!(select(&["nosuch".into()]).is_err());
        assert!(select(&[]).is_err());
    }

    /// The scenario names the catalogue passes to the programs exist in them.
    #[test]
    fn programs_know_the_catalogued_scenarios() {
        for (program, file) in [("scen_dax", "scen_dax.c"), ("scen_mf", "scen_mf.c")] {
            let src = std::fs::read_to_string(crate::workspace_root().join("user/c").join(file)).unwrap();
            for s in SCENARIOS {
                for p in s.phases.iter().filter(|p| p.program == program) {
                    // The list of names comes last (after options and their values).
                    let list = p.args.last().unwrap();
                    for name in list.split(',') {
                        assert!(src.contains(&format!("{{\"{name}\", ")), "{program} has no scenario {name}");
                    }
                }
            }
        }
    }
}
