//! `fsdax`: the host CLI. `fsdax help` lists the commands.

use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;

use anyhow::{bail, Result};
use fsdax_boot::bench::{self, BenchOptions};
use fsdax_boot::build::{self, Firmware};
use fsdax_boot::qemu::{self, Console, RunOptions};
use fsdax_boot::system::{self, System};
use fsdax_boot::{fstool, output_dir, scenario, user, ExitCode};

const HELP: &str = "\
fsdax: build and run the fsdax kernel in QEMU with an emulated NVDIMM

usage: fsdax COMMAND [OPTIONS]

  build [--uefi]          build the kernel and its BIOS (or UEFI) disk image
  run   [RUN OPTIONS]     build, then boot into the console (Ctrl-A x quits,
                          Ctrl-A c switches to the QEMU monitor)
  test  [RUN OPTIONS] [FILTER...]
                          build, boot with `test` and run the in-kernel tests
                          (those whose name contains a FILTER; `selftest`
                          adds one that fails on purpose); exits 0 when every
                          kernel test passed
  bench [--vs-linux | --linux-only] [--size SIZE] [--rounds N] [--only LIST]
                          the benchmark program (user/c/bench.c) on fsdax
                          (a few minutes), with --vs-linux also on Linux 6.1
                          XFS-DAX (Debian packages, cached in
                          target/fsdax/linux/; ~15 min), or there alone,
                          in the same QEMU machine with a 1 GiB NVDIMM,
                          the systems alternated each round; fsdax's rounds
                          add the kernel's `bench pmem` copy figures as the
                          raw reference; prints the table and writes
                          target/fsdax/bench/bench.{json,md,png}
                          (defaults: --size 256M --rounds 3)
  bench --kernel [RUN OPTIONS] [NAME...]
                          build, boot with `bench` and print the kernel's
                          own benchmarks as JSON lines (`pmem`: needs an
                          NVDIMM without a file system)
  scenario --linux | --fsdax NAME...|all
                          the DAX and memory-failure scenario programs
                          (user/c/scen_dax.c, scen_mf.c), each scenario in
                          its own boot(s) of the 1 GiB NVDIMM machine, the
                          host raising the machine checks they ask for
                          (QMP) and stopping the machine for the crash
                          test; writes target/fsdax/scenarios/
                          scenarios.{json,md} and logs/ (all: ~7 min)
  scenario --list         the scenarios
  exec [RUN OPTIONS] HOSTBINARY [ARGS...]
                          put a static Linux x86_64 program into the
                          NVDIMM image's file system as /bin/NAME (the image
                          is formatted if it has none), boot with
                          `exec /bin/NAME ARGS`, stream its output, and exit
                          with its status as a shell would (its exit code,
                          or 128 + the signal that killed it); a kernel
                          panic (65) or fatal machine check (97) keeps its
                          own status
  user                    build the user programs (user/) into
                          target/fsdax/user/
  clippy                  lint the kernel and its hal for the kernel target
                          (warnings are errors)

RUN OPTIONS
  --uefi                  boot with OVMF instead of SeaBIOS
  --pmem PATH             NVDIMM backing file (default target/fsdax/pmem.img;
                          created when missing, never truncated)
  --pmem-size SIZE        NVDIMM size, e.g. 256M (default), 1G
  --qmp PATH              QMP socket path (default: none)
  --cmdline STRING        kernel command line: shell (default), test [FILTER],
                          test selftest, bench [NAME]
  --no-build              use the image already built
  -- ARGS...              extra QEMU arguments
";

struct Cli {
    firmware: Firmware,
    pmem: PathBuf,
    pmem_size: u64,
    qmp: Option<PathBuf>,
    cmdline: Option<String>,
    no_build: bool,
    extra: Vec<String>,
    /// Words after the options: appended to the command line's mode
    /// (`fsdax test mce` boots with `test mce`).
    words: Vec<String>,
}

fn parse_run_options(args: &[String]) -> Result<Cli> {
    let mut cli = Cli {
        firmware: Firmware::Bios,
        pmem: output_dir().join("pmem.img"),
        pmem_size: qemu::DEFAULT_PMEM_SIZE,
        qmp: None,
        cmdline: None,
        no_build: false,
        extra: Vec::new(),
        words: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| anyhow::anyhow!("{name} needs a value"));
        match arg.as_str() {
            "--uefi" => cli.firmware = Firmware::Uefi,
            "--bios" => cli.firmware = Firmware::Bios,
            "--pmem" => cli.pmem = value("--pmem")?.into(),
            "--pmem-size" => cli.pmem_size = qemu::parse_size(&value("--pmem-size")?)?,
            "--qmp" => cli.qmp = Some(value("--qmp")?.into()),
            "--cmdline" => cli.cmdline = Some(value("--cmdline")?),
            "--no-build" => cli.no_build = true,
            "--" => {
                cli.extra = it.cloned().collect();
                break;
            }
            word if !word.starts_with('-') => cli.words.push(word.to_string()),
            other => bail!("unknown option {other:?} (see `fsdax help`)"),
        }
    }
    Ok(cli)
}

/// Builds (unless `--no-build`) and runs QEMU on the terminal; returns QEMU's
/// exit status.
fn run(cli: Cli, default_cmdline: &str) -> Result<i32> {
    let image = if cli.no_build {
        let image = build::image_path(cli.firmware);
        if !image.exists() {
            bail!("{} is missing: run `fsdax build` first", image.display());
        }
        image
    } else {
        build::build_all(cli.firmware)?
    };
    let mut opts = RunOptions::new(cli.firmware, image, cli.pmem);
    opts.pmem_size = cli.pmem_size;
    opts.qmp = cli.qmp;
    opts.cmdline = cli.cmdline.unwrap_or_else(|| {
        let mut words = vec![default_cmdline.to_string()];
        words.extend(cli.words);
        words.join(" ")
    });
    // `run` hands the terminal to QEMU; `test` and `bench` only print.
    let interactive = default_cmdline == "shell";
    opts.console = if interactive { Console::Terminal } else { Console::Piped };
    opts.extra = cli.extra;
    let accel = opts.accel;
    eprintln!(
        "fsdax: booting {} image under {}; NVDIMM {} ({} MiB); cmdline {:?}",
        opts.firmware.name(),
        accel.describe(),
        opts.pmem.display(),
        opts.pmem_size >> 20,
        opts.cmdline
    );
    if interactive {
        eprintln!("fsdax: console on this terminal; Ctrl-A x quits, Ctrl-A c toggles the QEMU monitor");
    }
    let mut command = qemu::qemu_command(&opts)?;
    if !interactive {
        command.stdin(std::process::Stdio::null());
    }
    let status = command.status()?;
    Ok(status.code().unwrap_or(-1))
}

/// Which systems `bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BenchSystems {
    Fsdax,
    Both,
    Linux,
}

/// `bench [--vs-linux | --linux-only]`: the benchmark program on fsdax,
/// both systems, or Linux alone.
fn bench_programs(args: &[String]) -> Result<ProcessExit> {
    let mut opts = BenchOptions::default();
    let mut which = BenchSystems::Fsdax;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| anyhow::anyhow!("{name} needs a value"));
        match arg.as_str() {
            "--linux-only" => which = BenchSystems::Linux,
            "--vs-linux" => which = BenchSystems::Both,
            "--size" => opts.size = qemu::parse_size(&value("--size")?)?,
            "--rounds" => {
                opts.rounds = value("--rounds")?.parse().map_err(|_| anyhow::anyhow!("--rounds needs a number"))?
            }
            "--only" => opts.only = Some(value("--only")?),
            other => bail!(
                "unknown option {other:?} for bench (see `fsdax help`; the kernel's own benchmarks are `bench --kernel`)"
            ),
        }
    }
    if opts.rounds == 0 || opts.size == 0 || opts.size % (2 << 20) != 0 || opts.size > (512 << 20) {
        bail!("--rounds must be at least 1 and --size a multiple of 2 MiB up to 512M (the NVDIMM holds 1 GiB)");
    }
    let mut not_measured = Vec::new();
    let mut systems: Vec<Box<dyn System>> = Vec::new();
    if which != BenchSystems::Linux {
        systems.push(Box::new(system::Fsdax::default()));
    } else {
        not_measured.push(("fsdax", "--linux-only"));
    }
    if which != BenchSystems::Fsdax {
        systems.push(Box::new(system::Linux::default()));
    } else {
        not_measured.push(("linux", "fsdax alone (--vs-linux measures both)"));
    }
    let md = bench::run(&mut systems, &not_measured, &opts)?;
    println!("{md}");
    Ok(ProcessExit::SUCCESS)
}

/// `scenario --linux | --fsdax NAME...|all`, `scenario --list`.
fn scenarios(args: &[String]) -> Result<ProcessExit> {
    let (mut linux, mut fsdax, mut names) = (false, false, Vec::new());
    for arg in args {
        match arg.as_str() {
            "--list" => {
                for s in scenario::SCENARIOS {
                    let boots = if s.phases.len() > 1 { format!(" ({} boots)", s.phases.len()) } else { String::new() };
                    println!("{:<16} {}{boots}", s.name, s.what);
                }
                return Ok(ProcessExit::SUCCESS);
            }
            "--linux" => linux = true,
            "--fsdax" => fsdax = true,
            word if !word.starts_with('-') => names.push(word.to_string()),
            other => bail!("unknown option {other:?} for scenario (see `fsdax help`)"),
        }
    }
    let chosen = scenario::select(&names)?;
    if !linux && !fsdax {
        bail!("say where to run: --linux (Linux 6.1 XFS-DAX) or --fsdax");
    }
    let mut systems: Vec<Box<dyn System>> = Vec::new();
    if fsdax {
        systems.push(Box::new(system::Fsdax::default()));
    }
    if linux {
        systems.push(Box::new(system::Linux::default()));
    }
    let md = scenario::run(&mut systems, &chosen, &scenario::default_out_dir())?;
    println!("{md}");
    Ok(ProcessExit::SUCCESS)
}

/// `exec [RUN OPTIONS] HOSTBINARY [ARGS...]`: everything after the binary
/// belongs to the program.
fn exec_program(args: &[String]) -> Result<ProcessExit> {
    let split = args
        .iter()
        .enumerate()
        .scan(false, |takes_value, (i, a)| {
            let is_binary = !*takes_value && !a.starts_with('-');
            *takes_value = matches!(a.as_str(), "--pmem" | "--pmem-size" | "--qmp" | "--cmdline");
            Some((i, is_binary))
        })
        .find(|&(_, b)| b)
        .map(|(i, _)| i)
        .ok_or_else(|| anyhow::anyhow!("usage: fsdax exec [RUN OPTIONS] HOSTBINARY [ARGS...]"))?;
    let cli = parse_run_options(&args[..split])?;
    let host = PathBuf::from(&args[split]);
    let prog_args = &args[split + 1..];
    let name = host
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow::anyhow!("{}: not a file name", host.display()))?
        .to_string();
    if !host.is_file() {
        bail!("{}: no such file", host.display());
    }
    let image = if cli.no_build {
        let image = build::image_path(cli.firmware);
        if !image.exists() {
            bail!("{} is missing: run `fsdax build` first", image.display());
        }
        image
    } else {
        build::build_all(cli.firmware)?
    };
    qemu::ensure_pmem_file(&cli.pmem, cli.pmem_size)?;
    let dest = format!("/bin/{name}");
    match fstool::install(&cli.pmem, &host, &dest) {
        Ok(formatted) => eprintln!(
            "fsdax: {}{} -> {dest} on {}",
            if formatted { "formatted the image; " } else { "" },
            host.display(),
            cli.pmem.display()
        ),
        Err(e) => bail!("installing {}: {e}", host.display()),
    }
    let mut opts = RunOptions::new(cli.firmware, image, cli.pmem);
    opts.pmem_size = cli.pmem_size;
    opts.qmp = cli.qmp;
    opts.extra = cli.extra;
    let mut words = vec!["exec".to_string(), dest];
    words.extend(prog_args.iter().cloned());
    opts.cmdline = words.join(" ");
    eprintln!("fsdax: booting under {}; cmdline {:?}", opts.accel.describe(), opts.cmdline);
    let outcome = qemu::run_program(&opts)?;
    match outcome {
        qemu::ProgramOutcome::Ended(status) => Ok(ProcessExit::from(status)),
        qemu::ProgramOutcome::Kernel(status) => {
            eprintln!("fsdax: the program did not finish: QEMU exited: {}", describe_exit(status));
            Ok(ProcessExit::from(u8::try_from(status).unwrap_or(1)))
        }
    }
}

fn describe_exit(status: i32) -> String {
    match ExitCode::from_qemu_status(status) {
        Some(code) => format!("{} (QEMU status {status})", code.meaning()),
        None => format!("QEMU status {status}"),
    }
}

fn main_inner(args: &[String]) -> Result<ProcessExit> {
    let Some(cmd) = args.first() else {
        print!("{HELP}{}", fstool::help());
        return Ok(ProcessExit::SUCCESS);
    };
    if let Some(result) = fstool::run(cmd, &args[1..]) {
        return Ok(match result {
            Ok(()) => ProcessExit::SUCCESS,
            Err(e) => {
                eprintln!("fsdax: {e}");
                ProcessExit::from(e.exit_status())
            }
        });
    }
    match cmd.as_str() {
        "help" | "-h" | "--help" => {
            print!("{HELP}{}", fstool::help());
            Ok(ProcessExit::SUCCESS)
        }
        "clippy" => {
            build::clippy_kernel()?;
            eprintln!("fsdax: clippy: the kernel and its hal are clean");
            Ok(ProcessExit::SUCCESS)
        }
        "build" => {
            let cli = parse_run_options(&args[1..])?;
            let image = build::build_all(cli.firmware)?;
            println!("{}", image.display());
            Ok(ProcessExit::SUCCESS)
        }
        "run" => {
            let status = run(parse_run_options(&args[1..])?, "shell")?;
            eprintln!("fsdax: QEMU exited: {}", describe_exit(status));
            Ok(match ExitCode::from_qemu_status(status) {
                Some(ExitCode::Poweroff) | Some(ExitCode::TestsPassed) | Some(ExitCode::BenchDone) => {
                    ProcessExit::SUCCESS
                }
                _ if status == 0 => ProcessExit::SUCCESS,
                _ => ProcessExit::FAILURE,
            })
        }
        "bench" if args[1..].iter().any(|a| a == "--kernel") => {
            let rest: Vec<String> = args[1..].iter().filter(|a| *a != "--kernel").cloned().collect();
            let status = run(parse_run_options(&rest)?, "bench")?;
            eprintln!("fsdax: QEMU exited: {}", describe_exit(status));
            Ok(if ExitCode::from_qemu_status(status) == Some(ExitCode::BenchDone) {
                ProcessExit::SUCCESS
            } else {
                ProcessExit::FAILURE
            })
        }
        "bench" => bench_programs(&args[1..]),
        "scenario" => scenarios(&args[1..]),
        "exec" => exec_program(&args[1..]),
        "user" => {
            let dir = user::build_all()?;
            for name in user::program_names() {
                println!("{}", dir.join(name).display());
            }
            Ok(ProcessExit::SUCCESS)
        }
        "test" => {
            let status = run(parse_run_options(&args[1..])?, cmd)?;
            eprintln!("fsdax: QEMU exited: {}", describe_exit(status));
            Ok(if ExitCode::from_qemu_status(status) == Some(ExitCode::TestsPassed) {
                ProcessExit::SUCCESS
            } else {
                ProcessExit::FAILURE
            })
        }
        other => bail!("unknown command {other:?} (see `fsdax help`)"),
    }
}

fn main() -> ProcessExit {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match main_inner(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fsdax: error: {e:#}");
            ProcessExit::from(2)
        }
    }
}
