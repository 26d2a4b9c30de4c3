//! `rsuite DIR`: a Rust `std` program for `x86_64-unknown-linux-musl` that
//! exercises the system calls a Rust program makes through the standard
//! library (files, directories, environment, time, process spawn and wait,
//! anonymous memory through `libc`, caught panics, exit codes) on DIR.
//!
//! It prints one line per case in the format of the C programs
//! (`ok NAME`, `FAIL NAME: expected X, got Y`, `skip NAME: reason`) and a
//! last `summary: P passed, F failed, S skipped` line, and exits 0 iff
//! nothing failed. `rsuite --child MODE` is the program spawning itself.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a case returns: `Err` is the failure line's "expected ..., got ...".
type Outcome = Result<(), String>;

fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Outcome {
    if got == want {
        Ok(())
    } else {
        Err(format!("expected {what} = {want:?}, got {got:?}"))
    }
}

fn check(what: &str, cond: bool) -> Outcome {
    if cond {
        Ok(())
    } else {
        Err(format!("expected {what}, got the opposite"))
    }
}

/// Turns an `io::Error` into a failure line.
fn io<T>(what: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("expected {what} to succeed, got {e} (errno {})", e.raw_os_error().unwrap_or(0)))
}

struct Runner {
    dir: PathBuf,
    me: PathBuf,
    passed: u32,
    failed: u32,
}

impl Runner {
    fn run(&mut self, name: &str, case: fn(&Runner) -> Outcome) {
        match case(self) {
            Ok(()) => {
                println!("ok {name}");
                self.passed += 1;
            }
            Err(why) => {
                println!("FAIL {name}: {why}");
                self.failed += 1;
            }
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn child(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.me);
        c.arg("--child").args(args);
        c
    }
}

fn files(r: &Runner) -> Outcome {
    let p = r.path("rs-file");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 4096) as u8).collect();
    io("File::create + write_all", File::create(&p).and_then(|mut f| f.write_all(&data)))?;
    expect("read back", io("fs::read", fs::read(&p))?, data.clone())?;
    let mut f = io("open read+write", OpenOptions::new().read(true).write(true).open(&p))?;
    io("seek", f.seek(SeekFrom::Start(50_000)))?;
    let mut buf = [0u8; 10];
    io("read_exact", f.read_exact(&mut buf))?;
    expect("bytes at 50000", &buf[..], &data[50_000..50_010])?;
    io("write_at", f.write_at(b"pwrite", 10))?;
    let mut at = [0u8; 6];
    io("read_at", f.read_at(&mut at, 10))?;
    expect("pread after pwrite", &at, b"pwrite")?;
    io("set_len grow", f.set_len(200_000))?;
    let meta = io("metadata", f.metadata())?;
    expect("size after set_len", meta.len(), 200_000)?;
    check("a regular file", meta.is_file())?;
    expect("nlink", meta.nlink(), 1)?;
    io("sync_all", f.sync_all())?;
    io("sync_data", f.sync_data())?;
    io("set_len shrink", f.set_len(10))?;
    drop(f);
    expect("size after shrink", io("metadata", fs::metadata(&p))?.len(), 10)?;
    // Append and create_new.
    let mut a = io("open append", OpenOptions::new().append(true).open(&p))?;
    io("append", a.write_all(b"++"))?;
    expect("size after append", io("metadata", a.metadata())?.len(), 12)?;
    let e = OpenOptions::new().write(true).create_new(true).open(&p).err();
    expect("create_new on an existing file", e.map(|e| e.kind()), Some(ErrorKind::AlreadyExists))?;
    // O_CLOEXEC is how std opens every file.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&a);
    // SAFETY: fcntl(F_GETFD) on an fd this function owns has no memory effects.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    expect("FD_CLOEXEC on files std opens", flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC)?;
    io("rename", fs::rename(&p, r.path("rs-file2")))?;
    expect("old name gone", fs::metadata(&p).err().map(|e| e.kind()), Some(ErrorKind::NotFound))?;
    io("remove_file", fs::remove_file(r.path("rs-file2")))?;
    let e = File::open(r.path("rs-missing")).err();
    expect("open of a missing file", e.map(|e| e.raw_os_error()), Some(Some(libc::ENOENT)))?;
    let e = OpenOptions::new().custom_flags(libc::O_DIRECTORY).read(true).open(r.path("rs-missing")).err();
    expect("O_DIRECTORY open of a missing path", e.map(|e| e.kind()), Some(ErrorKind::NotFound))?;
    Ok(())
}

fn dirs(r: &Runner) -> Outcome {
    let top = r.path("rs-dir");
    io("create_dir_all", fs::create_dir_all(top.join("a/b/c")))?;
    for i in 0..20 {
        io("write", fs::write(top.join(format!("a/f{i:02}")), format!("{i}")))?;
    }
    let mut names: Vec<String> = io("read_dir", fs::read_dir(top.join("a")))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("expected read_dir entries, got {e}"))?;
    names.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    want.push("b".into());
    want.sort();
    expect("directory entries", names, want)?;
    let ft = io("file_type", fs::symlink_metadata(top.join("a/b")))?.file_type();
    check("a directory", ft.is_dir())?;
    let e = fs::remove_dir(top.join("a")).err();
    expect("remove_dir of a non-empty dir", e.and_then(|e| e.raw_os_error()), Some(libc::ENOTEMPTY))?;
    let mode = io("metadata", fs::metadata(top.join("a/f00")))?.permissions().mode();
    check("a mode with owner read", mode & 0o400 != 0)?;
    io("remove_dir_all", fs::remove_dir_all(&top))?;
    check("the tree is gone", !top.exists())?;
    Ok(())
}

fn env_and_cwd(r: &Runner) -> Outcome {
    let args: Vec<String> = std::env::args().collect();
    check("argv[0] and DIR in args", args.len() >= 2)?;
    let saved = io("current_dir", std::env::current_dir())?;
    io("create_dir", fs::create_dir(r.path("rs-cwd")))?;
    io("set_current_dir", std::env::set_current_dir(r.path("rs-cwd")))?;
    let now = io("current_dir", std::env::current_dir())?;
    check("cwd ends in rs-cwd", now.ends_with("rs-cwd"))?;
    io("write relative", fs::write("rel", b"x"))?;
    check("relative path resolved from the cwd", r.path("rs-cwd/rel").exists())?;
    io("set_current_dir back", std::env::set_current_dir(&saved))?;
    io("remove_dir_all", fs::remove_dir_all(r.path("rs-cwd")))?;
    // The child sees the environment it is given.
    let out = r
        .child(&["env"])
        .env_clear()
        .env("FSDAX_RS", "value with spaces")
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| format!("expected a spawned child, got {e}"));
    match out {
        // Without pipes (fsdax has none), fall back to the exit status alone.
        Err(_) => {
            let st = r.child(&["env"]).env_clear().env("FSDAX_RS", "value with spaces").status();
            expect("child saw FSDAX_RS", io("spawn", st)?.code(), Some(0))
        }
        Ok(out) => expect("child saw FSDAX_RS", out.status.code(), Some(0)),
    }
}

fn time(_: &Runner) -> Outcome {
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    let dt = t0.elapsed();
    check("sleep of 20 ms takes at least 20 ms", dt >= Duration::from_millis(20))?;
    check("sleep of 20 ms takes less than 5 s", dt < Duration::from_secs(5))?;
    let wall =
        SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| format!("expected time after 1970, got {e}"))?;
    check("wall-clock time after 2020", wall.as_secs() > 1_577_836_800)?;
    let a = Instant::now();
    let b = Instant::now();
    check("Instant is monotonic", b >= a)
}

fn process(r: &Runner) -> Outcome {
    let st = io("spawn + wait", r.child(&["exit", "7"]).status())?;
    expect("child exit code", st.code(), Some(7))?;
    let st = io("spawn + wait", r.child(&["panic"]).stderr(Stdio::null()).status())?;
    expect("exit code of an uncaught panic", st.code(), Some(101))?;
    let st = io("spawn + wait", r.child(&["segv"]).status())?;
    expect("signal of a NULL write", st.signal(), Some(libc::SIGSEGV))?;
    let st = io("spawn + wait", r.child(&["overflow"]).stderr(Stdio::null()).status())?;
    // On musl, std does not know the main thread's guard range, so its
    // handler falls back to the default action: SIGSEGV.
    expect("signal after a stack overflow", st.signal(), Some(libc::SIGSEGV))?;
    let mut c = io("spawn", r.child(&["sleep"]).spawn())?;
    check("try_wait of a running child", io("try_wait", c.try_wait())?.is_none())?;
    io("kill", c.kill())?;
    let st = io("wait", c.wait())?;
    expect("signal of a killed child", st.signal(), Some(libc::SIGKILL))?;
    let e = Command::new(r.path("rs-no-such-program")).status().err();
    expect("spawn of a missing program", e.map(|e| e.kind()), Some(ErrorKind::NotFound))?;
    check("a pid", std::process::id() > 0)
}

fn memory(_: &Runner) -> Outcome {
    const LEN: usize = 1 << 20;
    // SAFETY: an anonymous private mapping with no address hint: it cannot
    // overlap memory Rust owns.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    check("an anonymous mapping", p != libc::MAP_FAILED)?;
    // SAFETY: p is a fresh, writable mapping of LEN bytes, used only here.
    let s = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), LEN) };
    check("zero-filled", s.iter().step_by(4096).all(|&b| b == 0))?;
    for (i, b) in s.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    check("bytes read back", s.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8))?;
    // SAFETY: the second half of our own mapping; nothing references it after.
    let rc = unsafe { libc::mprotect(p.cast::<u8>().add(LEN / 2).cast(), LEN / 2, libc::PROT_READ) };
    expect("mprotect", rc, 0)?;
    // SAFETY: the whole mapping, which `s` no longer borrows after this point.
    let rc = unsafe { libc::munmap(p, LEN) };
    expect("munmap", rc, 0)?;
    let v: Vec<u64> = (0..1_000_000).collect();
    expect("a heap vector (brk or mmap)", v.iter().sum::<u64>(), 499_999_500_000)
}

fn panics(_: &Runner) -> Outcome {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(|| {
        let v: Vec<u32> = Vec::new();
        v[3]
    });
    std::panic::set_hook(prev);
    check("a caught panic", r.is_err())?;
    let r = std::panic::catch_unwind(|| 5);
    expect("no panic", r.ok(), Some(5))
}

fn child(mode: &str, args: &[String]) -> ExitCode {
    match mode {
        "exit" => std::process::exit(args.first().and_then(|s| s.parse().ok()).unwrap_or(1)),
        "panic" => panic!("on purpose"),
        "segv" => {
            // SAFETY: not safe at all, on purpose: the child must die of SIGSEGV.
            unsafe { std::ptr::null_mut::<u32>().write_volatile(1) };
            ExitCode::from(2)
        }
        "overflow" => {
            #[allow(unconditional_recursion)]
            fn down(n: u64) -> u64 {
                let a = [n; 64];
                std::hint::black_box(&a);
                down(n + 1) + a[3]
            }
            ExitCode::from(down(0) as u8)
        }
        "sleep" => {
            std::thread::sleep(Duration::from_secs(30));
            ExitCode::from(3)
        }
        "env" => {
            let ok = std::env::var("FSDAX_RS").as_deref() == Ok("value with spaces") && std::env::vars().count() == 1;
            ExitCode::from(if ok { 0 } else { 1 })
        }
        _ => {
            eprintln!("rsuite --child: unknown mode {mode}");
            ExitCode::from(100)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 3 && args[1] == "--child" {
        return child(&args[2], &args[3..]);
    }
    if args.len() != 2 {
        eprintln!("usage: rsuite DIR (an existing, writable directory)");
        return ExitCode::from(2);
    }
    let dir = Path::new(&args[1]);
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().map(|c| c.join(dir)).unwrap_or_else(|_| dir.to_path_buf())
    };
    if !dir.is_dir() {
        eprintln!("rsuite: {} is not a directory", dir.display());
        return ExitCode::from(2);
    }
    let mut r = Runner { dir, me: PathBuf::from(&args[0]), passed: 0, failed: 0 };
    r.run("files", files);
    r.run("dirs", dirs);
    r.run("env_cwd_spawn_env", env_and_cwd);
    r.run("time", time);
    r.run("process_spawn_wait", process);
    r.run("mmap_mprotect_munmap", memory);
    r.run("panic_caught", panics);
    println!("summary: {} passed, {} failed, 0 skipped", r.passed, r.failed);
    if r.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
