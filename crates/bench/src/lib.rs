//! What the benchmark programs share: each figure is printed once for
//! people and once as a line `scripts/bench` collects into one table
//! (`BENCHMARKS.md`), beside the physical limit it is measured against in
//! the same run.
//!
//! The line is tab-separated: `@figure`, a key, the figure's name, its
//! value, its unit, whether lower or higher is better, its conditions, the
//! limit's value (or `ref:KEY` for another figure of the same run), and
//! what the limit is.

pub mod process;

use std::path::Path;
use std::time::{Duration, Instant};

/// Which way is better.
#[derive(Clone, Copy)]
pub enum Better {
    /// Times, bytes, memory.
    Lower,
    /// Rates.
    Higher,
}

/// A limit a figure is measured against.
pub enum Limit {
    /// Measured here.
    Value(f64, String),
    /// Another figure of the same run, by key.
    Figure(String, String),
    /// None stated.
    None,
}

/// Print one figure for `scripts/bench`.
pub fn figure(
    key: &str,
    name: &str,
    value: f64,
    unit: &str,
    better: Better,
    conditions: &str,
    limit: Limit,
) {
    let better = match better {
        Better::Lower => "lower",
        Better::Higher => "higher",
    };
    let (lv, lw) = match limit {
        Limit::Value(v, what) => (format!("{v}"), what),
        Limit::Figure(key, what) => (format!("ref:{key}"), what),
        Limit::None => ("-".to_string(), "-".to_string()),
    };
    println!("@figure\t{key}\t{name}\t{value}\t{unit}\t{better}\t{conditions}\t{lv}\t{lw}");
}

/// Which build this program is ("debug" or "release"), for the first line
/// each benchmark prints: a debug build's figures mean little.
pub fn build() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Milliseconds in a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The round trip of a small message over loopback TCP (median of 500):
/// the floor under any exchange between two nodes on this machine.
pub fn loopback_round_trip() -> std::io::Result<Duration> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&buf[..n])?;
        }
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut times = Vec::with_capacity(500);
    let mut buf = [0u8; 64];
    for _ in 0..500 {
        let start = Instant::now();
        s.write_all(&[7u8; 64])?;
        s.read_exact(&mut buf)?;
        times.push(start.elapsed());
    }
    drop(s);
    let _ = echo.join();
    times.sort();
    Ok(times[times.len() / 2])
}

/// Time to read every file under `dir` (what a start that reads the whole
/// store could not beat), and their size.
pub fn read_files(dir: &Path) -> std::io::Result<(Duration, u64)> {
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                bytes += std::fs::read(&path)?.len() as u64;
            }
        }
    }
    Ok((start.elapsed(), bytes))
}
