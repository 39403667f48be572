//! Test support: run one ignored test of this binary inside a fresh network namespace, so that
//! real `ip` commands cannot touch the host's interfaces.

use std::process::Command;

/// Set for the inner test by [`run_in_private_netns`].
const MARKER: &str = "BANGER_TEST_PRIVATE_NETNS";

/// Re-runs this test binary as `unshare --net -- <binary> <inner> --exact --ignored` and
/// requires the inner test to pass. Skipped (with a note) when not root.
pub fn run_in_private_netns(inner: &str) {
    if banger_host::users::current_uid() != 0 {
        eprintln!("skipped: needs root for unshare --net");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("unshare")
        .args(["--net", "--"])
        .arg(&exe)
        .args([
            inner,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MARKER, "1")
        .output()
        .expect("running unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{inner} in a private network namespace failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// Panics unless this process runs in a network namespace made by [`run_in_private_netns`]
/// (only `lo` there), so an inner test run by hand cannot change the host's network.
pub fn require_private_netns() {
    assert_eq!(
        std::env::var(MARKER).as_deref(),
        Ok("1"),
        "this test creates network interfaces: it only runs through its outer test"
    );
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("reading /proc/self/net/dev");
    let links: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(links, ["lo"], "not a fresh network namespace");
}
