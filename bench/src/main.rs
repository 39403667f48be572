//! `banger-bench`: the measuring client of `make bench` (`bench/run`). Each subcommand measures
//! one thing once and prints one JSON object on stdout; `bench/run` repeats it, measures the
//! baseline with the same subcommand (systemd's own objects, systemctl), and prints the table.
//! Nothing here asserts a figure: it exits non-zero only when it could not measure.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use zbus::Connection;
use zbus::names::InterfaceName;

/// The measuring client of `make bench`.
#[derive(Debug, Parser)]
#[command(name = "banger-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One property to read: `Properties.Get(interface, property)` on `path` of `dest`.
#[derive(Debug, Clone, Args)]
struct Property {
    /// The bus name, e.g. org.banger.Root1 or org.freedesktop.systemd1.
    #[arg(long)]
    dest: String,
    /// The object path.
    #[arg(long)]
    path: String,
    /// The interface of the property.
    #[arg(long)]
    interface: String,
    /// The property.
    #[arg(long)]
    property: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reads one property CALLS times in a row on one connection: p50, p99 and mean latency.
    Roundtrip {
        #[command(flatten)]
        target: Property,
        /// Calls measured.
        #[arg(long, default_value_t = 2000)]
        calls: usize,
        /// Calls made first and not measured.
        #[arg(long, default_value_t = 200)]
        warmup: usize,
    },
    /// CLIENTS connections at once, each reading the property CALLS times: errors, wall time
    /// (connecting included) and p99 latency of the calls.
    Storm {
        #[command(flatten)]
        target: Property,
        /// Concurrent clients, one bus connection each.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Calls per client.
        #[arg(long, default_value_t = 10)]
        calls: usize,
    },
    /// Reads the properties named by each --target in turn, in a tight loop, for SECONDS:
    /// calls and errors (each call may wait up to 30 s, e.g. for a restarting service).
    Loop {
        /// `DEST,PATH,INTERFACE,PROPERTY`, repeatable.
        #[arg(long = "target", required = true, value_parser = parse_target)]
        targets: Vec<Property>,
        /// How long to loop.
        #[arg(long)]
        seconds: f64,
    },
    /// Downloads URL (exactly SIZE bytes) into DEST through banger's own download path (the one
    /// updates and image pulls use: read, SHA-256, write, one fsync at the end): MB/s.
    Fetch {
        /// An http:// URL.
        #[arg(long)]
        url: String,
        /// Its size in bytes.
        #[arg(long)]
        size: u64,
        /// The file to write (replaced).
        #[arg(long)]
        dest: std::path::PathBuf,
    },
    /// Runs a command once and reports BYTES over its wall time as MB/s (e.g. `curl -o`).
    Throughput {
        /// The bytes the command moves.
        #[arg(long)]
        bytes: u64,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// SHA-256 throughput of this machine: `openssl speed -evp sha256` on 256 KiB blocks
    /// (banger's read size), as MB/s.
    OpensslSha256 {
        /// Seconds openssl measures for.
        #[arg(long, default_value_t = 2)]
        seconds: u32,
    },
    /// Runs a command RUNS times (output discarded): wall time min, median and max.
    Spawn {
        /// Runs measured (one more is made first, not measured).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

fn parse_target(s: &str) -> Result<Property, String> {
    let parts: Vec<&str> = s.split(',').collect();
    match parts[..] {
        [dest, path, interface, property] => Ok(Property {
            dest: dest.into(),
            path: path.into(),
            interface: interface.into(),
            property: property.into(),
        }),
        _ => Err(format!(
            "{s:?} is not DEST,PATH,INTERFACE,PROPERTY (e.g. \
             org.freedesktop.systemd1,/org/freedesktop/systemd1,org.freedesktop.systemd1.Manager,Version)"
        )),
    }
}

/// The value at `pct` percent of sorted `v` (nearest rank below), 0 for none.
fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * pct / 100]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn get(conn: &Connection, p: &Property) -> zbus::Result<()> {
    let iface = InterfaceName::try_from(p.interface.as_str())?;
    conn.call_method(
        Some(p.dest.as_str()),
        p.path.as_str(),
        Some("org.freedesktop.DBus.Properties"),
        "Get",
        &(iface, p.property.as_str()),
    )
    .await
    .map(drop)
}

async fn system_bus(timeout: Duration) -> zbus::Result<Connection> {
    zbus::connection::Builder::system()
        .method_timeout(timeout)
        .build()
        .await
}

async fn roundtrip(p: &Property, calls: usize, warmup: usize) -> anyhow::Result<serde_json::Value> {
    let conn = system_bus(Duration::from_secs(30))
        .await
        .context("connecting to the system bus")?;
    for _ in 0..warmup {
        get(&conn, p)
            .await
            .with_context(|| format!("reading {}.{} on {}", p.interface, p.property, p.dest))?;
    }
    let mut took = Vec::with_capacity(calls);
    let mut errors = 0usize;
    for _ in 0..calls {
        let t = Instant::now();
        if get(&conn, p).await.is_err() {
            errors += 1;
        }
        took.push(t.elapsed());
    }
    took.sort();
    let mean = took.iter().sum::<Duration>() / calls.max(1) as u32;
    Ok(json!({
        "calls": calls,
        "errors": errors,
        "p50_us": micros(percentile(&took, 50)),
        "p99_us": micros(percentile(&took, 99)),
        "mean_us": micros(mean),
    }))
}

async fn storm(p: &Property, clients: usize, calls: usize) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(calls);
                let conn = match system_bus(Duration::from_secs(60)).await {
                    Ok(c) => c,
                    Err(e) => return (took, calls, Some(e.to_string())),
                };
                let mut errors = 0;
                let mut first = None;
                for _ in 0..calls {
                    let t = Instant::now();
                    if let Err(e) = get(&conn, &p).await {
                        errors += 1;
                        first.get_or_insert(e.to_string());
                    }
                    took.push(t.elapsed());
                }
                (took, errors, first)
            })
        })
        .collect();
    let mut took = Vec::with_capacity(clients * calls);
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (t, e, first) = t.await.context("a client task")?;
        took.extend(t);
        errors += e;
        if first_error.is_none() {
            first_error = first;
        }
    }
    let wall = start.elapsed();
    took.sort();
    Ok(json!({
        "clients": clients,
        "calls": clients * calls,
        "errors": errors,
        "first_error": first_error,
        "wall_ms": millis(wall),
        "p99_us": micros(percentile(&took, 99)),
    }))
}

async fn tight_loop(targets: &[Property], seconds: f64) -> anyhow::Result<serde_json::Value> {
    let conn = system_bus(Duration::from_secs(30))
        .await
        .context("connecting to the system bus")?;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let (mut calls, mut errors) = (0usize, 0usize);
    let mut seen: Vec<String> = Vec::new();
    let mut slowest = Duration::ZERO;
    'outer: loop {
        for p in targets {
            if Instant::now() >= end {
                break 'outer;
            }
            let t = Instant::now();
            let r = get(&conn, p).await;
            slowest = slowest.max(t.elapsed());
            calls += 1;
            if let Err(e) = r {
                errors += 1;
                if seen.len() < 5 {
                    seen.push(format!("{}: {e}", p.dest));
                }
            }
        }
    }
    Ok(json!({
        "calls": calls,
        "errors": errors,
        "first_errors": seen,
        "slowest_ms": millis(slowest),
    }))
}

fn spawn(runs: usize, command: &[String]) -> anyhow::Result<serde_json::Value> {
    let run = || -> anyhow::Result<(Duration, bool)> {
        let t = Instant::now();
        let status = std::process::Command::new(&command[0])
            .args(&command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {}", command[0]))?;
        Ok((t.elapsed(), status.success()))
    };
    run()?;
    let mut took = Vec::with_capacity(runs);
    let mut failed = 0;
    for _ in 0..runs {
        let (t, ok) = run()?;
        failed += usize::from(!ok);
        took.push(t);
    }
    took.sort();
    Ok(json!({
        "runs": runs,
        "failed": failed,
        "min_ms": millis(took.first().copied().unwrap_or_default()),
        "median_ms": millis(percentile(&took, 50)),
        "max_ms": millis(took.last().copied().unwrap_or_default()),
    }))
}

/// MB/s (10^6 bytes a second) for `bytes` in `d`.
fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6
}

fn fetch(url: &str, size: u64, dest: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let fetcher = banger_fetch::Fetcher::new(&banger_fetch::FetchLimits {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(30),
        total_timeout: Duration::from_secs(600),
        redirect_hosts: Vec::new(),
        redirect_setting: "(bench)",
    });
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let t = Instant::now();
    let got = fetcher
        .fetch_to_file(url, size, size, dest, &cancel, &mut |_| {})
        .with_context(|| format!("downloading {url}"))?;
    let took = t.elapsed();
    Ok(json!({
        "bytes": got.bytes,
        "seconds": took.as_secs_f64(),
        "mb_per_s": mb_per_s(got.bytes, took),
    }))
}

fn throughput(bytes: u64, command: &[String]) -> anyhow::Result<serde_json::Value> {
    let t = Instant::now();
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {}", command[0]))?;
    let took = t.elapsed();
    if !status.success() {
        bail!("{} exited with {status}", command.join(" "));
    }
    Ok(json!({
        "bytes": bytes,
        "seconds": took.as_secs_f64(),
        "mb_per_s": mb_per_s(bytes, took),
    }))
}

/// The rate of openssl's last line (`sha256  1704493.75k`: thousands of bytes a second).
fn openssl_rate(output: &str) -> Option<f64> {
    let last = output.lines().rev().find(|l| l.starts_with("sha256"))?;
    let k = last.split_whitespace().last()?.strip_suffix('k')?;
    Some(k.parse::<f64>().ok()? * 1000.0 / 1e6)
}

fn openssl_sha256(seconds: u32) -> anyhow::Result<serde_json::Value> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-evp", "sha256", "-bytes", "262144", "-seconds"])
        .arg(seconds.to_string())
        .stderr(Stdio::null())
        .output()
        .context("running openssl speed")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = openssl_rate(&text)
        .with_context(|| format!("reading the rate out of openssl speed's output: {text}"))?;
    Ok(json!({"mb_per_s": rate}))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("banger-bench: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match &cli.command {
            Command::Roundtrip {
                target,
                calls,
                warmup,
            } => {
                if *calls == 0 {
                    bail!("--calls must be at least 1");
                }
                roundtrip(target, *calls, *warmup).await
            }
            Command::Storm {
                target,
                clients,
                calls,
            } => storm(target, *clients, *calls).await,
            Command::Loop { targets, seconds } => tight_loop(targets, *seconds).await,
            Command::Fetch { url, size, dest } => fetch(url, *size, dest),
            Command::Throughput { bytes, command } => throughput(*bytes, command),
            Command::OpensslSha256 { seconds } => openssl_sha256(*seconds),
            Command::Spawn { runs, command } => {
                if *runs == 0 {
                    bail!("--runs must be at least 1");
                }
                spawn(*runs, command)
            }
        }
    });
    match result {
        Ok(v) => {
            println!("{v}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("banger-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank_below() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100), Duration::from_millis(100));
        assert_eq!(percentile(&v[..1], 99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn targets_need_four_parts() {
        let t = parse_target("a.b,/a,a.b.C,Version").unwrap();
        assert_eq!(
            (t.dest.as_str(), t.path.as_str(), t.property.as_str()),
            ("a.b", "/a", "Version")
        );
        assert!(parse_target("a.b,/a,Version").is_err());
    }

    #[test]
    fn openssl_speed_output_is_read() {
        let out = "The 'numbers' are in 1000s of bytes per second processed.\n\
                   type         262144 bytes\n\
                   sha256         1704493.75k\n";
        let rate = openssl_rate(out).unwrap();
        assert!((rate - 1704.49375).abs() < 1e-6, "{rate}");
        assert_eq!(openssl_rate("sha256 nothing"), None);
        assert_eq!(openssl_rate(""), None);
    }

    #[test]
    fn spawn_times_a_real_command_and_counts_failures() {
        let v = spawn(3, &["false".to_string()]).unwrap();
        assert_eq!(v["failed"], 3);
        let v = spawn(2, &["true".to_string()]).unwrap();
        assert_eq!(v["failed"], 0);
        assert!(v["min_ms"].as_f64().unwrap() <= v["max_ms"].as_f64().unwrap());
    }
}
