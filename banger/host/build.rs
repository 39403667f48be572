//! Stamps the build identity (version, commit, build time) into every banger binary.
//!
//! Each value can be overridden at build time, which is how releases (and the smoke suite's
//! "newer" releases) are made: `BANGER_VERSION`, `BANGER_COMMIT`, `BANGER_BUILT_AT`.

use std::process::Command;

fn main() {
    for var in [
        "BANGER_VERSION",
        "BANGER_COMMIT",
        "BANGER_BUILT_AT",
        "SOURCE_DATE_EPOCH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    for git in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        if std::path::Path::new(git).exists() {
            println!("cargo:rerun-if-changed={git}");
        }
    }

    let version = env_or("BANGER_VERSION", || {
        std::env::var("CARGO_PKG_VERSION").unwrap()
    });
    let version = version.trim_start_matches('v').to_string();
    let commit = env_or("BANGER_COMMIT", || {
        run(&["git", "rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
    });
    let built_at = env_or("BANGER_BUILT_AT", || {
        let args: Vec<String> = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(epoch) => vec!["date".into(), "-u".into(), "-d".into(), format!("@{epoch}")],
            Err(_) => vec!["date".into(), "-u".into()],
        };
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.push("+%Y-%m-%dT%H:%M:%SZ");
        run(&args).unwrap_or_else(|| "unknown".into())
    });
    for (name, value) in [
        ("version", &version),
        ("commit", &commit),
        ("built_at", &built_at),
    ] {
        assert!(
            !value.is_empty() && value.chars().all(|c| c.is_ascii_graphic()),
            "build {name} {value:?} must be non-empty printable ASCII without spaces"
        );
    }
    println!("cargo:rustc-env=BANGER_BUILD_VERSION={version}");
    println!("cargo:rustc-env=BANGER_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=BANGER_BUILD_BUILT_AT={built_at}");
}

fn env_or(name: &str, default: impl FnOnce() -> String) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => default(),
    }
}

fn run(args: &[&str]) -> Option<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}
