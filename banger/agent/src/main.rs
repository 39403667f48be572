//! `banger-agent`: runs inside a VM and answers the host's questions about the guest
//! (protocol: the library half of this crate, `docs/guest.md`).
//!
//! It finds its channel by itself: the virtio-serial port named
//! [`banger_agent::VIRTIO_PORT_NAME`] when there is one (QEMU), else a vsock listener on
//! [`banger_agent::VSOCK_PORT`] (Firecracker). It reads only `/proc` and `/sys`, writes
//! nothing but its answers, and needs no configuration. Built statically it runs in any
//! Linux guest.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_agent::{
    Address, Answer, Info, MAX_REQUEST_BYTES, PROTOCOL, ProcSocket, Request, VIRTIO_PORT_NAME,
    VSOCK_PORT, op, parse_proc_net, ports_of,
};

/// While the host side of a virtio-serial port is closed, reads return at once: wait this
/// long before reading again.
const HOST_CLOSED_PAUSE: Duration = Duration::from_millis(200);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("--version") => {
            println!("banger-agent {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Some("--once") => {
            // Answers requests from standard input (for trying it by hand).
            let stdin = io::stdin();
            let _ = serve(stdin.lock(), io::stdout(), false);
            return;
        }
        Some(_) => {
            eprintln!("usage: banger-agent [--version | --once]");
            std::process::exit(2);
        }
    }
    if let Some(port) = find_virtio_port(Path::new("/sys/class/virtio-ports")) {
        eprintln!("banger-agent: serving on {}", port.display());
        serve_virtio_port(&port);
    }
    match vsock::VsockListener::bind_with_cid_port(vsock::VMADDR_CID_ANY, VSOCK_PORT) {
        Ok(l) => {
            eprintln!("banger-agent: serving on vsock port {VSOCK_PORT}");
            for conn in l.incoming() {
                match conn {
                    Ok(c) => match c.try_clone() {
                        Ok(w) => {
                            let _ = serve(BufReader::new(c), w, false);
                        }
                        Err(e) => eprintln!("banger-agent: {e}"),
                    },
                    Err(e) => {
                        eprintln!("banger-agent: accept: {e}");
                        std::thread::sleep(HOST_CLOSED_PAUSE);
                    }
                }
            }
        }
        Err(e) => {
            eprintln!(
                "banger-agent: no virtio-serial port named {VIRTIO_PORT_NAME} and no vsock ({e}); nothing to serve"
            );
            std::process::exit(1);
        }
    }
}

/// The device of the virtio-serial port named [`VIRTIO_PORT_NAME`]: `/dev/vportNpM`.
fn find_virtio_port(class: &Path) -> Option<PathBuf> {
    fs::read_dir(class).ok()?.flatten().find_map(|e| {
        let name = fs::read_to_string(e.path().join("name")).ok()?;
        (name.trim_end() == VIRTIO_PORT_NAME).then(|| Path::new("/dev").join(e.file_name()))
    })
}

/// Serves the port for ever: a closed host side is waited out, an error reopens the port.
fn serve_virtio_port(dev: &Path) -> ! {
    loop {
        match fs::OpenOptions::new().read(true).write(true).open(dev) {
            Ok(f) => match f.try_clone() {
                Ok(w) => {
                    if let Err(e) = serve(BufReader::new(f), w, true) {
                        eprintln!("banger-agent: {}: {e}", dev.display());
                    }
                }
                Err(e) => eprintln!("banger-agent: {}: {e}", dev.display()),
            },
            Err(e) => eprintln!("banger-agent: cannot open {}: {e}", dev.display()),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Answers request lines until end of input (or, on a virtio port, for ever: there an end
/// of input only means that nobody is connected on the host).
fn serve(mut r: impl BufRead, mut w: impl Write, port: bool) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut r)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            if !port {
                return Ok(());
            }
            std::thread::sleep(HOST_CLOSED_PAUSE);
            continue;
        }
        let answer = if line.len() > MAX_REQUEST_BYTES && !line.ends_with(b"\n") {
            skip_line(&mut r)?;
            refusal(0, format!("request longer than {MAX_REQUEST_BYTES} bytes"))
        } else {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            answer(text)
        };
        // The leading newline ends a partial line that an earlier writer (killed mid-line)
        // may have left in the channel, so the host reads this answer on a line of its own.
        let mut out = b"\n".to_vec();
        out.extend(serde_json::to_vec(&answer).map_err(io::Error::other)?);
        out.push(b'\n');
        w.write_all(&out)?;
        w.flush()?;
    }
}

/// Discards input up to and including the next newline.
fn skip_line(r: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            r.consume(i + 1);
            return Ok(());
        }
        let n = buf.len();
        r.consume(n);
    }
}

fn refusal(id: u64, error: String) -> Answer {
    Answer {
        v: PROTOCOL,
        id,
        ok: None,
        error: Some(error),
    }
}

/// The answer to one request line.
fn answer(text: &str) -> Answer {
    let req: Request = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return refusal(0, format!("malformed request: {e}")),
    };
    if req.v != PROTOCOL {
        return refusal(
            req.id,
            format!(
                "protocol version {} is not spoken here (this agent speaks {PROTOCOL})",
                req.v
            ),
        );
    }
    let result = match req.op.as_str() {
        op::INFO => serde_json::to_value(info()),
        op::PORTS => serde_json::to_value(ports()),
        other => return refusal(req.id, format!("unknown op '{other}'")),
    };
    match result {
        Ok(v) => Answer {
            v: PROTOCOL,
            id: req.id,
            ok: Some(v),
            error: None,
        },
        Err(e) => refusal(req.id, e.to_string()),
    }
}

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn info() -> Info {
    let uptime_s = read_trimmed("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    Info {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: read_trimmed("/proc/sys/kernel/hostname"),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        uptime_s,
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        addresses: addresses(),
    }
}

fn addresses() -> Vec<Address> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ifa in list {
        if ifa.interface_name == "lo" {
            continue;
        }
        let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let text = if let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            format!("{}/{}", a.ip(), m.ip().to_bits().count_ones())
        } else if let (Some(a), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
            format!("{}/{}", a.ip(), m.ip().to_bits().count_ones())
        } else {
            continue;
        };
        out.push(Address {
            iface: ifa.interface_name,
            address: text,
        });
    }
    out
}

fn ports() -> Vec<banger_agent::Port> {
    let mut sockets: Vec<(&'static str, ProcSocket)> = Vec::new();
    for (file, proto, udp) in [
        ("/proc/net/tcp", "tcp", false),
        ("/proc/net/tcp6", "tcp", false),
        ("/proc/net/udp", "udp", true),
        ("/proc/net/udp6", "udp", true),
    ] {
        if let Ok(text) = fs::read_to_string(file) {
            sockets.extend(parse_proc_net(&text, udp).into_iter().map(|s| (proto, s)));
        }
    }
    ports_of(sockets, &socket_owners())
}

/// Socket inode → (pid, comm) for every process whose descriptors can be read.
fn socket_owners() -> BTreeMap<u64, (u32, String)> {
    let mut owners = BTreeMap::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return owners;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let comm = read_trimmed(&format!("/proc/{pid}/comm"));
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
            {
                owners.entry(inode).or_insert_with(|| (pid, comm.clone()));
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> Vec<Answer> {
        let mut out = Vec::new();
        serve(input.as_bytes(), &mut out, false).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn each_request_gets_one_answer_with_its_id() {
        let a = run("\n{\"v\":1,\"id\":4,\"op\":\"info\"}\n{\"v\":1,\"id\":5,\"op\":\"ports\"}\n");
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].id, a[1].id), (4, 5));
        let info: Info = serde_json::from_value(a[0].ok.clone().unwrap()).unwrap();
        assert!(info.uptime_s > 0.0);
        assert!(a[1].ok.as_ref().unwrap().is_array());
    }

    #[test]
    fn bad_requests_are_answered_with_the_reason() {
        let long = format!("{}\n", "x".repeat(MAX_REQUEST_BYTES + 10));
        let input = format!(
            "not json\n{{\"v\":2,\"id\":7,\"op\":\"info\"}}\n{{\"v\":1,\"id\":8,\"op\":\"reboot\"}}\n{long}{{\"v\":1,\"id\":9,\"op\":\"info\"}}\n"
        );
        let a = run(&input);
        assert_eq!(a.len(), 5);
        assert!(
            a[0].error
                .as_ref()
                .unwrap()
                .starts_with("malformed request")
        );
        assert!(a[1].error.as_ref().unwrap().contains("version 2"));
        assert_eq!(a[2].error.as_deref(), Some("unknown op 'reboot'"));
        assert!(a[3].error.as_ref().unwrap().contains("longer than 4096"));
        assert_eq!((a[4].id, a[4].error.is_none()), (9, true));
    }

    #[test]
    fn the_port_is_found_by_name() {
        let d = std::env::temp_dir().join(format!("banger-agent-test-{}", std::process::id()));
        for (port, name) in [("vport0p1", "other"), ("vport0p2", VIRTIO_PORT_NAME)] {
            fs::create_dir_all(d.join(port)).unwrap();
            fs::write(d.join(port).join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(find_virtio_port(&d), Some(PathBuf::from("/dev/vport0p2")));
        fs::remove_dir_all(&d).unwrap();
    }
}
