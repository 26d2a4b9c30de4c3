//! A small QMP client: connect to QEMU's monitor socket, run commands, and
//! keep the asynchronous events that arrive in between (a reply can come
//! after an event line, e.g. `MEMORY_FAILURE` after `mce`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// A QMP connection in command mode.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Events received so far, oldest first.
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects to the socket (retrying until `timeout`, as QEMU creates it
    /// while starting), reads the greeting and enters command mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| format!("connecting to QMP at {}", path.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut qmp = Qmp { reader: BufReader::new(stream.try_clone()?), writer: stream, events: Vec::new() };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            bail!("unexpected QMP greeting: {greeting}");
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QMP connection closed");
        }
        serde_json::from_str(&line).with_context(|| format!("bad QMP message {line:?}"))
    }

    /// Runs a QMP command and returns its `return` value; events that arrive
    /// first are kept in [`Qmp::events`].
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let msg = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{msg}")?;
        loop {
            let reply = self.read_message()?;
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                bail!("QMP {command} failed: {err}");
            }
            if reply.get("event").is_some() {
                self.events.push(reply);
                continue;
            }
            return Err(anyhow!("unexpected QMP reply {reply}"));
        }
    }

    /// Runs a human-monitor (HMP) command such as `mce ...`; returns its text.
    pub fn hmp(&mut self, command_line: &str) -> Result<String> {
        let ret = self.execute("human-monitor-command", json!({ "command-line": command_line }))?;
        Ok(ret.as_str().unwrap_or_default().to_string())
    }
}
