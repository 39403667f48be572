//! Test support: a private, system-like `dbus-daemon` with banger's real bus policy, for the
//! interface tests of both services. Enabled by the `test-support` feature only.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::assets::{ASSETS, Dest};
use crate::install::Layout;

/// A running private bus; killed on drop.
pub struct PrivateBus {
    child: Child,
    dir: PathBuf,
    /// The bus address (`unix:path=…`).
    pub address: String,
}

impl PrivateBus {
    /// Starts a bus whose configuration mirrors the system bus defaults plus banger's policy
    /// files, rendered for `owner`. The current user may additionally own any name, so that
    /// test doubles (polkit, systemd, resolved) can be served.
    pub fn start(owner: &str) -> std::io::Result<Self> {
        // Unique per process and per bus: tests start buses from parallel threads.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "banger-testbus-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            rand_bits()
        ));
        std::fs::create_dir(&dir)?;
        std::fs::create_dir(dir.join("system.d"))?;
        // Clients in tests may run as another user: the socket's directory must be reachable.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let layout = Layout::new("/usr/local");
        for a in ASSETS
            .iter()
            .filter(|a| matches!(a.dest, Dest::BusPolicyDir | Dest::AdminBusPolicyDir))
        {
            std::fs::write(
                dir.join("system.d").join(a.name),
                a.render(&layout, owner).map_err(std::io::Error::other)?,
            )?;
        }
        let me = crate::users::current_uid();
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <includedir>{dir}/system.d</includedir>
  <policy user="{me}">
    <allow own="org.freedesktop.PolicyKit1"/>
    <allow own="org.freedesktop.systemd1"/>
    <allow own="org.freedesktop.resolve1"/>
    <allow send_destination="org.freedesktop.PolicyKit1"/>
    <allow send_destination="org.freedesktop.systemd1"/>
    <allow send_destination="org.freedesktop.resolve1"/>
  </policy>
</busconfig>
"#,
            sock = dir.join("bus").display(),
            dir = dir.display(),
        );
        let conf = dir.join("bus.conf");
        std::fs::write(&conf, config)?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1", "--nopidfile"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
        if line.trim().is_empty() {
            let _ = child.kill();
            let status = child.wait()?;
            let _ = std::fs::remove_dir_all(&dir);
            return Err(std::io::Error::other(format!(
                "dbus-daemon printed no address ({status}; its messages are above)"
            )));
        }
        Ok(PrivateBus {
            child,
            dir,
            address: line.trim().to_string(),
        })
    }

    /// The bus socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("bus")
    }

    /// A new connection to the bus.
    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        zbus::connection::Builder::address(self.address.as_str())
            .build()
            .await
    }

    /// The scratch directory of this bus.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn rand_bits() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0)
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Extracts `<interface name="NAME">…</interface>` from introspection XML and wraps it as the
/// checked-in contract file for `path`.
pub fn interface_contract(introspection: &str, name: &str, path: &str) -> Option<String> {
    let start = introspection.find(&format!("<interface name=\"{name}\">"))?;
    let end = start + introspection[start..].find("</interface>")? + "</interface>".len();
    let block = introspection[start..end].trim_end();
    let body = format!("  {block}\n");
    Some(format!(
        "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \
         \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n\
         <!-- The contract of {name}, as served by the service. Generated: regenerate with\n     \
         `make update-generated`; a test fails when the service and this file differ. -->\n\
         <node name=\"{path}\">\n{body}</node>\n"
    ))
}

/// Compares a served contract with the checked-in file, or rewrites the file when
/// `BANGER_UPDATE_GENERATED=1`. Panics with a diff hint on drift.
pub fn assert_contract(served: &str, checked_in: &Path) {
    if std::env::var("BANGER_UPDATE_GENERATED").as_deref() == Ok("1") {
        std::fs::write(checked_in, served).expect("writing the contract file");
        return;
    }
    let on_disk = std::fs::read_to_string(checked_in).unwrap_or_default();
    if on_disk != served {
        let first = on_disk
            .lines()
            .zip(served.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(on_disk.lines().count().min(served.lines().count()));
        panic!(
            "{} differs from what the service serves (first difference at line {}):\n--- served ---\n{served}\n\
             Run `make update-generated` and review the diff (and docs/dbus-api.md).",
            checked_in.display(),
            first + 1
        );
    }
}

/// Introspects `path` at `destination` on `bus`, extracts `interface`, and checks it against the
/// checked-in contract `dbus/<interface>.xml` (see [`assert_contract`]).
pub async fn assert_served_contract(
    bus: &PrivateBus,
    destination: &str,
    path: &str,
    interface: &str,
) {
    assert_served_contract_shown_at(bus, destination, path, path, interface).await
}

/// As [`assert_served_contract`], with the file's node named `shown` (a path that stands for
/// every object of its kind, such as `/org/banger/Daemon1/vm/ID`) instead of `path`.
pub async fn assert_served_contract_shown_at(
    bus: &PrivateBus,
    destination: &str,
    path: &str,
    shown: &str,
    interface: &str,
) {
    let client = bus.connect().await.expect("connecting to the private bus");
    let xml = zbus::fdo::IntrospectableProxy::builder(&client)
        .destination(destination.to_string())
        .path(path.to_string())
        .build()
        .await
        .expect("an Introspectable proxy")
        .introspect()
        .await
        .expect("the object answers Introspect");
    let contract = interface_contract(&xml, interface, shown)
        .unwrap_or_else(|| panic!("{path} does not serve {interface}"));
    let checked_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../dbus")
        .join(format!("{interface}.xml"));
    assert_contract(&contract, &checked_in);
}
