//! Every protocol word is spelled once: outside `banger-api`, no program code (test modules
//! aside) writes a D-Bus error name, an update job's stage, result, property or signal name, or
//! a job's interface or path as a string literal; it uses the enums and constants here. A word
//! that comes back fails this test with the file and line.

use std::path::{Path, PathBuf};

use banger_api::error::ErrorKind;
use banger_api::job::{DaemonJobProperty, JobProperty, JobResult, Stage};
use banger_api::names;
use banger_api::objects::{ImageProperty, VmProperty};

/// Stage words that are also the update journal's own phase names (its on-disk format, spelled
/// once in `bangerd-root/src/update/journal.rs`).
const JOURNAL_PHASES: [&str; 6] = [
    "swapping",
    "restarting-daemon",
    "restarting-helper",
    "finalizing",
    "rolling-back",
    "done",
];

fn words() -> Vec<String> {
    let mut w: Vec<String> = ErrorKind::ALL
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    // One-word stages and results ("checking", "failed") are ordinary English in messages and
    // systemd's vocabulary; the hyphenated ones are banger's alone.
    w.extend(
        Stage::ALL
            .iter()
            .map(|s| s.as_str())
            .chain(JobResult::ALL.iter().map(|r| r.as_str()))
            .filter(|s| s.contains('-') && !JOURNAL_PHASES.contains(s))
            .map(str::to_string),
    );
    // A job's property names are read by name only through `JobProperty`.
    w.extend(JobProperty::ALL.iter().map(|p| p.as_str().to_string()));
    // So are the properties of the daemon's VM and image objects.
    w.extend(VmProperty::ALL.iter().map(|p| p.as_str().to_string()));
    w.extend(ImageProperty::ALL.iter().map(|p| p.as_str().to_string()));
    // ("Description" is also systemd's own unit property.)
    w.extend(
        DaemonJobProperty::ALL
            .iter()
            .filter(|p| **p != DaemonJobProperty::Description)
            .map(|p| p.as_str().to_string()),
    );
    w.push(names::JOB_FINISHED_SIGNAL.to_string());
    w.push(names::JOB_INTERFACE.to_string());
    w.push(names::JOB_PATH_NAMESPACE.to_string());
    w
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn protocol_words_are_spelled_only_in_banger_api() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in [
        "banger/src",
        "banger/host/src",
        "banger/release/src",
        "banger/release-tool/src",
        "bangerd/src",
        "bangerd-root/src",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    let words = words();
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // Program code only: unit tests come last, after `#[cfg(test)]`.
        let code = text.split("\n#[cfg(test)]").next().unwrap();
        for (n, line) in code.lines().enumerate() {
            // An interface's or a property's name in its attribute must be a literal; the
            // drift test checks it against dbus/*.xml.
            if line.trim_start().starts_with("#[zbus::interface(")
                || line.trim_start().starts_with("#[zbus(property")
            {
                continue;
            }
            for w in &words {
                if line.contains(&format!("\"{w}\"")) || line.contains(&format!("\"{w}/")) {
                    found.push(format!("{}:{}: {w}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "protocol words spelled outside banger-api:\n{}",
        found.join("\n")
    );
}
