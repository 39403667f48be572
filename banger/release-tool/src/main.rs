//! banger-release: the maintainers' release tool (see docs/releasing.md).
//!
//! `make` turns the three binaries of one build into a signed release directory in the format
//! `banger update` reads (`banger_release`): a reproducible tarball, `SHA256SUMS` and its
//! signature, and a freshly signed `manifest.json` that keeps the other releases it already
//! listed. `verify` checks a release directory with the same verifier the update engine uses,
//! before it is published.
//!
//! It is never installed on hosts, and it never publishes anything: it only writes files under
//! `--out`.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, anyhow, bail};
use banger_api::time::{parse_rfc3339, rfc3339, unix_now};
use banger_host::build_info::BuildIdentity;
use banger_host::fsutil::atomic_write;
use banger_release::manifest::SCHEMA;
use banger_release::sums::to_hex;
use banger_release::{
    Manifest, PRODUCT, ReleaseEntry, Sha256Sums, TARGET, TrustedKeys, Version, tarball_name,
    verify_signature,
};
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

/// The programs a release holds, in tarball order.
const PROGRAMS: [&str; 3] = ["banger", "bangerd", "bangerd-root"];

#[derive(Parser)]
#[command(
    name = "banger-release",
    version = banger_host::build_info::VERSION,
    about = "Make and check signed banger release directories (maintainers only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Package the binaries of one build as a signed release and (re)sign manifest.json.
    Make(MakeArgs),
    /// Check a release directory (manifest, signatures, sums, sizes, tarballs) before publishing.
    Verify(VerifyArgs),
}

#[derive(Args, Debug, Clone)]
struct MakeArgs {
    /// Directory holding banger, bangerd and bangerd-root of one build (BANGER_VERSION=…).
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// P-256 private key, PEM: SEC1 "EC PRIVATE KEY" or PKCS#8 "PRIVATE KEY".
    #[arg(long, value_name = "KEY.pem")]
    key: PathBuf,
    /// Release directory: gets <version>/…, manifest.json and manifest.json.sig.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Channel named in the manifest.
    #[arg(long, default_value = "stable")]
    channel: String,
    /// How long the signed manifest stays valid.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    expires_in_days: u64,
    /// Make this version the manifest's latest even if it is not the highest release.
    #[arg(long)]
    latest: bool,
}

#[derive(Args, Debug, Clone)]
struct VerifyArgs {
    /// The directory that will be served as the directory of manifest_url.
    #[arg(long, value_name = "DIR")]
    manifest_url_dir: PathBuf,
    /// Trusted public key (PEM "BEGIN PUBLIC KEY"); repeat for several.
    #[arg(long = "key", value_name = "PUB.pem", required = true)]
    keys: Vec<PathBuf>,
    /// Channel the hosts follow.
    #[arg(long, default_value = "stable")]
    channel: String,
    /// Do not run the binaries' --version (only check names, types and hashes).
    #[arg(long)]
    no_exec: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Make(args) => make(&args, unix_now()).map(|report| print!("{report}")),
        Cmd::Verify(args) => verify_cmd(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("banger-release: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------------------------------
// Keys and signatures

/// Loads a P-256 private key from PEM: SEC1 (`openssl ecparam -genkey`, with or without the
/// `EC PARAMETERS` block) or unencrypted PKCS#8 (`openssl genpkey`).
fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading the signing key {}", path.display()))?;
    let fault = |why: String| anyhow!("the signing key {}: {why}", path.display());
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(fault(
            "is encrypted; decrypt it for signing (openssl pkcs8 -in KEY -out PLAIN)".into(),
        ));
    }
    if let Some(block) = pem_block(&text, "EC PRIVATE KEY") {
        let sk = p256::SecretKey::from_sec1_pem(&block).map_err(|e| {
            fault(format!(
                "is not a P-256 (prime256v1) SEC1 private key ({e})"
            ))
        })?;
        return Ok(SigningKey::from(&sk));
    }
    if let Some(block) = pem_block(&text, "PRIVATE KEY") {
        return SigningKey::from_pkcs8_pem(&block)
            .map_err(|e| fault(format!("is not a P-256 PKCS#8 private key ({e})")));
    }
    Err(fault(
        "holds no 'EC PRIVATE KEY' or 'PRIVATE KEY' PEM block (make one with: openssl ecparam \
         -name prime256v1 -genkey -noout -out KEY.pem)"
            .into(),
    ))
}

/// The PEM block labelled `label` (BEGIN line to END line), if any.
fn pem_block(text: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(format!("{}\n", &text[start..stop]))
}

/// The public half of `key`, PEM (`BEGIN PUBLIC KEY`).
fn public_key_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("a P-256 public key encodes")
}

/// A release signature: base64 (one line, no newline) of the DER ECDSA-P256/SHA-256 signature,
/// as `openssl dgst -sha256 -sign KEY FILE | base64 -w0` makes it.
fn sign(key: &SigningKey, data: &[u8]) -> String {
    let sig: DerSignature = key.sign(data);
    base64::engine::general_purpose::STANDARD.encode(sig.as_bytes())
}

// ------------------------------------------------------------------------------------------
// make

/// What `make` wrote, printed as its report.
#[derive(Debug)]
struct MakeReport {
    identity: BuildIdentity,
    tarball: PathBuf,
    size: u64,
    sha256: String,
    sums: PathBuf,
    manifest: PathBuf,
    latest: String,
    versions: Vec<String>,
    expires_at: String,
}

impl std::fmt::Display for MakeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = &self.identity;
        writeln!(
            f,
            "release v{} (commit {}, built {})",
            id.version, id.commit, id.built_at
        )?;
        writeln!(
            f,
            "  {} ({} bytes, sha256 {})",
            self.tarball.display(),
            self.size,
            self.sha256
        )?;
        writeln!(f, "  {} (+ .sig)", self.sums.display())?;
        writeln!(
            f,
            "  {} (+ .sig): latest {}, releases {}, expires {}",
            self.manifest.display(),
            self.latest,
            self.versions.join(", "),
            self.expires_at
        )
    }
}

/// Packages `args.bin_dir` as a release under `args.out` and re-signs the manifest at `now`.
fn make(args: &MakeArgs, now: u64) -> Result<MakeReport> {
    if args.expires_in_days == 0 || args.expires_in_days > 3650 {
        bail!("--expires-in-days must be between 1 and 3650");
    }
    if args.channel.is_empty() || !args.channel.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("--channel {:?} is not a plain word", args.channel);
    }
    let key = load_signing_key(&args.key)?;
    let identity = read_identity(&args.bin_dir)?;
    let version = Version::parse(&identity.version).map_err(|e| {
        anyhow!(
            "the binaries in {} report a bad version: {e}",
            args.bin_dir.display()
        )
    })?;
    let built = parse_rfc3339(&identity.built_at).ok_or_else(|| {
        anyhow!(
            "the binaries in {} report a build time {:?} that is not RFC 3339 UTC",
            args.bin_dir.display(),
            identity.built_at
        )
    })?;

    // The manifest is read first: a malformed one stops everything before any write.
    let manifest_path = args.out.join("manifest.json");
    let existing = read_existing_manifest(&manifest_path, &args.channel)?;

    let tarball = build_tarball(&args.bin_dir, built)?;
    let name = tarball_name(&version);
    let dir = args.out.join(version.to_string());
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tarball_path = dir.join(&name);
    write_file(&tarball_path, &tarball, 0o644)?;
    let sha256 = to_hex(&Sha256::digest(&tarball));
    let sums = format!("{sha256}  {name}\n");
    let sums_path = dir.join("SHA256SUMS");
    write_file(&sums_path, sums.as_bytes(), 0o644)?;
    write_file(
        &dir.join("SHA256SUMS.sig"),
        sign(&key, sums.as_bytes()).as_bytes(),
        0o644,
    )?;

    let entry = ReleaseEntry {
        version: version.to_string(),
        target: TARGET.into(),
        tarball: format!("{version}/{name}"),
        sums: format!("{version}/SHA256SUMS"),
        sums_sig: format!("{version}/SHA256SUMS.sig"),
        size: tarball.len() as u64,
    };
    let manifest = merge_manifest(
        existing,
        entry,
        &args.channel,
        args.latest,
        now,
        args.expires_in_days,
    )?;
    for other in &manifest.releases {
        let path = args.out.join(&other.tarball);
        if !path.is_file() {
            eprintln!(
                "banger-release: warning: manifest.json lists v{} but {} is not in {}",
                other.version,
                other.tarball,
                args.out.display()
            );
        }
    }
    let bytes = manifest.to_json();
    let sig = sign(&key, &bytes);
    // Check what was just written with the verifier hosts run (signatures, rules, dates).
    let mut keys = TrustedKeys::default();
    keys.add_pem("the signing key's public half", &public_key_pem(&key));
    Manifest::verify(&bytes, sig.as_bytes(), &keys, &args.channel, now)
        .context("the manifest just made does not verify")?;
    write_file(&manifest_path, &bytes, 0o644)?;
    write_file(&args.out.join("manifest.json.sig"), sig.as_bytes(), 0o644)?;

    Ok(MakeReport {
        identity,
        tarball: tarball_path,
        size: tarball.len() as u64,
        sha256,
        sums: sums_path,
        manifest: manifest_path,
        latest: manifest.latest.clone(),
        versions: manifest
            .releases
            .iter()
            .map(|r| r.version.clone())
            .collect(),
        expires_at: manifest.expires_at,
    })
}

/// Runs each program's `--version` in `dir` and requires one identity for all three.
fn read_identity(dir: &Path) -> Result<BuildIdentity> {
    let mut found: Vec<(&str, BuildIdentity)> = Vec::new();
    for program in PROGRAMS {
        let path = dir.join(program);
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("{}: cannot read it", path.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", path.display());
        }
        found.push((program, run_version(&path, program)?));
    }
    let (first_program, first) = &found[0];
    if let Some((program, other)) = found.iter().find(|(_, id)| id != first) {
        bail!(
            "refusing a mixed set of binaries in {}: {first_program} reports {} but {program} \
             reports {} (build all three in one cargo build with the same BANGER_VERSION)",
            dir.display(),
            first.version_line(first_program),
            other.version_line(program),
        );
    }
    Ok(first.clone())
}

/// `PATH --version`, parsed as `PROGRAM vX.Y.Z (commit C, built T)`.
///
/// A binary just written can be "busy" for a moment: a process forked meanwhile (by another
/// thread) holds the write descriptor until it execs. That is retried, 20 times 50 ms apart.
fn run_version(path: &Path, program: &str) -> Result<BuildIdentity> {
    let mut busy = 0;
    let out = loop {
        match Command::new(path).arg("--version").output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && busy < 20 => {
                busy += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => break other,
        }
    }
    .with_context(|| format!("running {} --version", path.display()))?;
    if !out.status.success() {
        bail!(
            "{} --version failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or_default();
    BuildIdentity::parse_version_line(program, line)
        .map_err(|e| anyhow!("{} --version: {e}", path.display()))
}

/// A gzip'd tar of exactly the three binaries: regular files, mode 0755, owner 0:0, mtime
/// `mtime`, no directory entries. The same binaries always give the same bytes.
fn build_tarball(dir: &Path, mtime: u64) -> Result<Vec<u8>> {
    let gz = flate2::GzBuilder::new()
        .mtime(u32::try_from(mtime).unwrap_or(0))
        .operating_system(3) // Unix, fixed whatever the build host
        .write(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    for program in PROGRAMS {
        let path = dir.join(program);
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut header = tar::Header::new_ustar();
        header
            .set_path(program)
            .with_context(|| format!("tar header for {program}"))?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append(&header, data.as_slice())
            .with_context(|| format!("adding {program} to the tarball"))?;
    }
    let gz = tar.into_inner().context("finishing the tarball")?;
    gz.finish().context("finishing the gzip stream")
}

/// The manifest already in the release directory, if any, refusing one that does not parse or
/// belongs to another product or channel.
fn read_existing_manifest(path: &Path, channel: &str) -> Result<Option<Manifest>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let m: Manifest = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a banger release manifest (fix or remove it)",
            path.display()
        )
    })?;
    if m.schema != SCHEMA || m.product != PRODUCT {
        bail!(
            "{} is schema {} for product {:?}; this tool writes schema {SCHEMA} for {PRODUCT}",
            path.display(),
            m.schema,
            m.product
        );
    }
    if m.channel != channel {
        bail!(
            "{} is for channel {:?}, not {channel:?} (use another --out per channel)",
            path.display(),
            m.channel
        );
    }
    Ok(Some(m))
}

/// The new manifest: `existing`'s releases with `entry` added or replaced, `latest` updated,
/// fresh dates.
fn merge_manifest(
    existing: Option<Manifest>,
    entry: ReleaseEntry,
    channel: &str,
    make_latest: bool,
    now: u64,
    expires_in_days: u64,
) -> Result<Manifest> {
    let (mut releases, old_latest) = match existing {
        Some(m) => (m.releases, Some(m.latest)),
        None => (Vec::new(), None),
    };
    releases.retain(|r| !(r.version == entry.version && r.target == entry.target));
    let version = entry.version.clone();
    releases.push(entry);
    let mut parsed: Vec<(Version, usize)> = Vec::new();
    for (i, r) in releases.iter().enumerate() {
        let v = Version::parse(&r.version)
            .map_err(|e| anyhow!("manifest.json lists a bad version: {e}"))?;
        parsed.push((v, i));
    }
    // Newest first, so the manifest reads top-down.
    parsed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let releases: Vec<ReleaseEntry> = parsed.iter().map(|(_, i)| releases[*i].clone()).collect();
    let highest_stable = parsed
        .iter()
        .map(|(v, _)| v)
        .find(|v| v.pre.is_empty())
        .or(parsed.first().map(|(v, _)| v))
        .expect("at least this release")
        .to_string();
    let latest = if make_latest || highest_stable == version {
        version
    } else {
        match old_latest {
            Some(l) if releases.iter().any(|r| r.version == l) => l,
            _ => highest_stable,
        }
    };
    Ok(Manifest {
        schema: SCHEMA,
        product: PRODUCT.into(),
        channel: channel.into(),
        issued_at: rfc3339(now),
        expires_at: rfc3339(now + expires_in_days * 86_400),
        latest,
        releases,
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    atomic_write(path, bytes, mode).with_context(|| format!("writing {}", path.display()))
}

// ------------------------------------------------------------------------------------------
// verify

fn verify_cmd(args: &VerifyArgs) -> Result<()> {
    let mut keys = TrustedKeys::default();
    for path in &args.keys {
        let pem = fs::read_to_string(path)
            .with_context(|| format!("reading the public key {}", path.display()))?;
        if pem.contains("PRIVATE KEY-----") {
            bail!(
                "{} is a private key: pass the public key (openssl ec -in KEY.pem -pubout)",
                path.display()
            );
        }
        keys.add_pem(&path.display().to_string(), &pem);
    }
    keys.require_some()?;
    let report = verify_dir(
        &args.manifest_url_dir,
        &keys,
        &args.channel,
        unix_now(),
        !args.no_exec,
    )?;
    for line in &report.ok {
        println!("{line}");
    }
    if report.faults.is_empty() {
        println!(
            "{}: OK, every signature, hash, size and tarball checks out",
            args.manifest_url_dir.display()
        );
        Ok(())
    } else {
        for fault in &report.faults {
            eprintln!("FAULT: {fault}");
        }
        bail!(
            "{}: {} fault(s); do not publish this directory",
            args.manifest_url_dir.display(),
            report.faults.len()
        )
    }
}

/// Per-release results of [`verify_dir`]; a fault of the manifest itself is an `Err`.
#[derive(Debug, Default)]
struct VerifyReport {
    ok: Vec<String>,
    faults: Vec<String>,
}

/// Checks the release directory `dir` as a host following `channel` would at `now`, plus what
/// only a maintainer can check cheaply: every release listed, not only the one installed.
fn verify_dir(
    dir: &Path,
    keys: &TrustedKeys,
    channel: &str,
    now: u64,
    run_binaries: bool,
) -> Result<VerifyReport> {
    let manifest_path = dir.join("manifest.json");
    let sig_path = dir.join("manifest.json.sig");
    let bytes = fs::read(&manifest_path)
        .with_context(|| format!("{}: cannot read it", manifest_path.display()))?;
    let sig = fs::read(&sig_path).with_context(|| {
        format!(
            "{}: cannot read it (the manifest is unsigned)",
            sig_path.display()
        )
    })?;
    let verified = Manifest::verify(&bytes, &sig, keys, channel, now)
        .map_err(|e| anyhow!("{}: {e}", manifest_path.display()))?;
    let m = &verified.manifest;
    let mut report = VerifyReport::default();
    report.ok.push(format!(
        "{}: signed, channel {}, issued {}, expires {}, latest v{}",
        manifest_path.display(),
        m.channel,
        m.issued_at,
        m.expires_at,
        m.latest
    ));
    for entry in &m.releases {
        match verify_release(dir, entry, keys, run_binaries) {
            Ok(line) => report.ok.push(line),
            Err(e) => report.faults.push(format!("v{}: {e:#}", entry.version)),
        }
    }
    Ok(report)
}

/// One release of the manifest: signed sums, listed hash, exact size, tarball contents.
fn verify_release(
    dir: &Path,
    entry: &ReleaseEntry,
    keys: &TrustedKeys,
    run_binaries: bool,
) -> Result<String> {
    let version = Version::parse(&entry.version).map_err(|e| anyhow!(e))?;
    let sums_path = local_path(dir, &entry.sums)?;
    let sig_path = local_path(dir, &entry.sums_sig)?;
    let tarball_path = local_path(dir, &entry.tarball)?;
    let sums =
        fs::read(&sums_path).with_context(|| format!("{}: cannot read it", sums_path.display()))?;
    let sig = fs::read(&sig_path).with_context(|| {
        format!(
            "{}: cannot read it (SHA256SUMS is unsigned)",
            sig_path.display()
        )
    })?;
    verify_signature(keys, &sums_path.display().to_string(), &sums, &sig)?;
    let parsed = Sha256Sums::parse(&sums).map_err(|e| anyhow!("{}: {e}", sums_path.display()))?;
    let name = tarball_name(&version);
    let file = entry.tarball.rsplit('/').next().unwrap_or_default();
    if file != name {
        bail!("the manifest entry points at {file:?}, not {name:?}");
    }
    let want = parsed
        .digest_of(&name)
        .map_err(|e| anyhow!("{}: {e}", sums_path.display()))?;
    let tarball = fs::read(&tarball_path)
        .with_context(|| format!("{}: cannot read it", tarball_path.display()))?;
    if tarball.len() as u64 != entry.size {
        bail!(
            "{} is {} bytes but the manifest says {}",
            tarball_path.display(),
            tarball.len(),
            entry.size
        );
    }
    let got: [u8; 32] = Sha256::digest(&tarball).into();
    if got != want {
        bail!(
            "{} has sha256 {} but SHA256SUMS lists {}",
            tarball_path.display(),
            to_hex(&got),
            to_hex(&want)
        );
    }
    let files = read_tarball(&tarball)
        .with_context(|| format!("{}: bad tarball", tarball_path.display()))?;
    let mut line = format!(
        "v{version}: {} ({} bytes) matches the signed SHA256SUMS; entries {}",
        entry.tarball,
        entry.size,
        PROGRAMS.join(", ")
    );
    if run_binaries {
        let id = run_tarball_binaries(&files)
            .with_context(|| format!("{}: its binaries", tarball_path.display()))?;
        if id.version != version.to_string() {
            bail!(
                "{}: its binaries report v{} but the manifest entry is v{version}",
                tarball_path.display(),
                id.version
            );
        }
        line.push_str(&format!(
            " report v{} (commit {}, built {})",
            id.version, id.commit, id.built_at
        ));
    }
    Ok(line)
}

/// A release path from the manifest, as a file under `dir` (no absolute URLs, no `..`).
fn local_path(dir: &Path, rel: &str) -> Result<PathBuf> {
    if rel.contains("://") {
        bail!("{rel:?} is an absolute URL; verify checks a local directory only");
    }
    let p = Path::new(rel);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("{rel:?} is not a plain relative path");
    }
    Ok(dir.join(p))
}

/// The tarball's files, refusing anything but exactly the three programs as regular files.
fn read_tarball(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in archive.entries().context("reading the tar stream")? {
        let mut entry = entry.context("reading a tar entry")?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if !PROGRAMS.contains(&name.as_str()) {
            bail!(
                "unexpected entry {name:?} (only {} belong)",
                PROGRAMS.join(", ")
            );
        }
        if kind != tar::EntryType::Regular {
            bail!("entry {name:?} is {kind:?}, not a regular file");
        }
        if files.iter().any(|(n, _)| *n == name) {
            bail!("entry {name:?} appears twice");
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .with_context(|| format!("reading entry {name:?}"))?;
        files.push((name, data));
    }
    for program in PROGRAMS {
        if !files.iter().any(|(n, _)| n == program) {
            bail!("entry {program:?} is missing");
        }
    }
    Ok(files)
}

/// Writes the binaries to a private temporary directory and reads their one identity.
fn run_tarball_binaries(files: &[(String, Vec<u8>)]) -> Result<BuildIdentity> {
    let tmp = TempDir::new()?;
    for (name, data) in files {
        let path = tmp.0.join(name);
        let mut f =
            fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        f.write_all(data)?;
        f.set_permissions(fs::Permissions::from_mode(0o700))?;
    }
    read_identity(&tmp.0)
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let base = std::env::temp_dir();
        for n in 0..1000u32 {
            let p = base.join(format!("banger-release.{}.{n}", std::process::id()));
            match fs::create_dir(&p) {
                Ok(()) => {
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o700))?;
                    return Ok(TempDir(p));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
            }
        }
        bail!("cannot create a temporary directory in {}", base.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const BUILT: &str = "2026-11-22T02:00:00Z";

    fn openssl(args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    /// An openssl-made SEC1 key (as docs/releasing.md says to make one) and its public PEM.
    fn openssl_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            s(&key),
        ]);
        openssl(&["ec", "-in", s(&key), "-pubout", "-out", s(&public)]);
        (key, public)
    }

    /// Stand-ins for the three programs: scripts printing a --version line.
    fn fake_bins(dir: &Path, version: &str, commits: [&str; 3]) -> PathBuf {
        let bins = dir.join(format!("bin-{version}-{}", commits.join("-")));
        fs::create_dir_all(&bins).unwrap();
        for (program, commit) in PROGRAMS.iter().zip(commits) {
            let path = bins.join(program);
            fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho '{program} v{version} (commit {commit}, built {BUILT})'\n"
                ),
            )
            .unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        bins
    }

    fn make_args(bins: &Path, key: &Path, out: &Path) -> MakeArgs {
        MakeArgs {
            bin_dir: bins.into(),
            key: key.into(),
            out: out.into(),
            channel: "stable".into(),
            expires_in_days: 30,
            latest: false,
        }
    }

    fn keys_from(public: &Path) -> TrustedKeys {
        let mut keys = TrustedKeys::default();
        keys.add_pem("test key", &fs::read_to_string(public).unwrap());
        keys
    }

    fn manifest_at(out: &Path) -> Manifest {
        serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap()
    }

    const NOW: u64 = 1_795_313_683;

    #[test]
    fn make_then_verify_round_trips_and_merges_releases() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, public) = openssl_key(tmp.path(), "release");
        let out = tmp.path().join("out");
        let keys = keys_from(&public);

        let v020 = fake_bins(tmp.path(), "0.2.0", ["abc"; 3]);
        let r = make(&make_args(&v020, &key, &out), NOW).unwrap();
        assert_eq!(r.latest, "0.2.0");
        let report = verify_dir(&out, &keys, "stable", NOW, true).unwrap();
        assert!(report.faults.is_empty(), "{:?}", report.faults);
        assert!(
            report
                .ok
                .iter()
                .any(|l| l.contains("report v0.2.0 (commit abc")),
            "{:?}",
            report.ok
        );

        // A lower version later: listed, but latest stays the highest.
        let v019 = fake_bins(tmp.path(), "0.1.9", ["old"; 3]);
        make(&make_args(&v019, &key, &out), NOW + 10).unwrap();
        let m = manifest_at(&out);
        assert_eq!(m.latest, "0.2.0");
        let versions: Vec<&str> = m.releases.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["0.2.0", "0.1.9"]);
        assert_eq!(m.issued_at, rfc3339(NOW + 10));
        assert_eq!(m.expires_at, rfc3339(NOW + 10 + 30 * 86_400));

        // A prerelease does not become latest on its own; --latest forces it.
        let rc = fake_bins(tmp.path(), "0.3.0-rc.1", ["rc"; 3]);
        make(&make_args(&rc, &key, &out), NOW + 20).unwrap();
        assert_eq!(manifest_at(&out).latest, "0.2.0");
        let mut forced = make_args(&v019, &key, &out);
        forced.latest = true;
        make(&forced, NOW + 30).unwrap();
        assert_eq!(manifest_at(&out).latest, "0.1.9");
        // A rebuilt 0.2.0 replaces its own entry, and is the highest stable again.
        let rebuilt = fake_bins(tmp.path(), "0.2.0", ["def"; 3]);
        make(&make_args(&rebuilt, &key, &out), NOW + 40).unwrap();
        let m = manifest_at(&out);
        assert_eq!(m.latest, "0.2.0");
        assert_eq!(m.releases.len(), 3);

        let report = verify_dir(&out, &keys, "stable", NOW + 50, true).unwrap();
        assert!(report.faults.is_empty(), "{:?}", report.faults);
        assert!(
            report
                .ok
                .iter()
                .any(|l| l.contains("report v0.2.0 (commit def")),
            "{:?}",
            report.ok
        );
        // What the update engine does with the same files.
        let bytes = fs::read(out.join("manifest.json")).unwrap();
        let sig = fs::read(out.join("manifest.json.sig")).unwrap();
        let v = Manifest::verify(&bytes, &sig, &keys, "stable", NOW + 50).unwrap();
        assert_eq!(v.offered(), ["v0.3.0-rc.1", "v0.2.0", "v0.1.9"]);
    }

    #[test]
    fn the_tarball_is_reproducible_and_holds_exactly_the_three_programs() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, _) = openssl_key(tmp.path(), "release");
        let bins = fake_bins(tmp.path(), "0.2.0", ["abc"; 3]);
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        let ra = make(&make_args(&bins, &key, &a), NOW).unwrap();
        let rb = make(&make_args(&bins, &key, &b), NOW + 3600).unwrap();
        assert_eq!(
            fs::read(&ra.tarball).unwrap(),
            fs::read(&rb.tarball).unwrap()
        );
        assert_eq!(
            fs::read(a.join("0.2.0/SHA256SUMS")).unwrap(),
            fs::read(b.join("0.2.0/SHA256SUMS")).unwrap()
        );

        let bytes = fs::read(&ra.tarball).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.entry_type(), tar::EntryType::Regular);
            assert_eq!(h.mode().unwrap(), 0o755);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.mtime().unwrap(), parse_rfc3339(BUILT).unwrap());
            seen.push(String::from_utf8(entry.path_bytes().to_vec()).unwrap());
        }
        assert_eq!(seen, PROGRAMS);
        // GNU tar agrees on the listing.
        let out = Command::new("tar")
            .args(["-tzvf", s(&ra.tarball)])
            .output()
            .unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        assert_eq!(listing.lines().count(), 3, "{listing}");
        assert!(
            listing.lines().all(|l| l.starts_with("-rwxr-xr-x 0/0")),
            "{listing}"
        );
        // sha256sum agrees with SHA256SUMS.
        let out = Command::new("sha256sum")
            .arg("--check")
            .arg("--strict")
            .arg("SHA256SUMS")
            .current_dir(a.join("0.2.0"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    #[test]
    fn a_mixed_set_of_binaries_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, _) = openssl_key(tmp.path(), "release");
        let out = tmp.path().join("out");
        let bins = fake_bins(tmp.path(), "0.2.0", ["abc", "abc", "zzz"]);
        let e = make(&make_args(&bins, &key, &out), NOW).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("mixed set"), "{msg}");
        assert!(msg.contains("bangerd-root v0.2.0 (commit zzz"), "{msg}");
        assert!(!out.exists());

        fs::remove_file(bins.join("bangerd")).unwrap();
        let msg = format!(
            "{:#}",
            make(&make_args(&bins, &key, &out), NOW).unwrap_err()
        );
        assert!(msg.contains("bangerd"), "{msg}");
    }

    #[test]
    fn verify_names_the_file_and_the_fault() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, public) = openssl_key(tmp.path(), "release");
        let (_, other_public) = openssl_key(tmp.path(), "other");
        let bins = fake_bins(tmp.path(), "0.2.0", ["abc"; 3]);
        let out = tmp.path().join("out");
        make(&make_args(&bins, &key, &out), NOW).unwrap();
        let keys = keys_from(&public);

        let e = verify_dir(&out, &keys_from(&other_public), "stable", NOW, false).unwrap_err();
        assert!(format!("{e:#}").contains("does not verify"), "{e:#}");
        let e = verify_dir(&out, &keys, "stable", NOW + 31 * 86_400, false).unwrap_err();
        assert!(format!("{e:#}").contains("expired"), "{e:#}");
        let e = verify_dir(&out, &keys, "beta", NOW, false).unwrap_err();
        assert!(format!("{e:#}").contains("channel"), "{e:#}");

        let tarball = out
            .join("0.2.0")
            .join(tarball_name(&Version::parse("0.2.0").unwrap()));
        let good = fs::read(&tarball).unwrap();
        let fault = |keys: &TrustedKeys| {
            let r = verify_dir(&out, keys, "stable", NOW, false).unwrap();
            assert_eq!(r.faults.len(), 1, "{r:?}");
            r.faults[0].clone()
        };
        let mut bad = good.clone();
        let last = bad.len() - 20;
        bad[last] ^= 0xff;
        fs::write(&tarball, &bad).unwrap();
        let f = fault(&keys);
        assert!(f.contains("sha256") && f.contains(".tar.gz"), "{f}");
        fs::write(&tarball, &good[..good.len() - 1]).unwrap();
        let f = fault(&keys);
        assert!(f.contains("bytes but the manifest says"), "{f}");
        fs::write(&tarball, &good).unwrap();

        let sums_sig = out.join("0.2.0/SHA256SUMS.sig");
        let sig = fs::read(&sums_sig).unwrap();
        fs::remove_file(&sums_sig).unwrap();
        let f = fault(&keys);
        assert!(
            f.contains("SHA256SUMS.sig") && f.contains("unsigned"),
            "{f}"
        );
        fs::write(&sums_sig, &sig).unwrap();
        let sums = out.join("0.2.0/SHA256SUMS");
        let text = fs::read_to_string(&sums).unwrap();
        fs::write(&sums, text.replace("banger-0.2.0", "banger-0.2.1")).unwrap();
        let f = fault(&keys);
        assert!(
            f.contains("SHA256SUMS") && f.contains("does not verify"),
            "{f}"
        );

        fs::remove_file(out.join("manifest.json.sig")).unwrap();
        let e = verify_dir(&out, &keys, "stable", NOW, false).unwrap_err();
        assert!(format!("{e:#}").contains("manifest.json.sig"), "{e:#}");
    }

    #[test]
    fn tarballs_with_anything_but_the_three_programs_are_refused() {
        fn tarball(entries: &[(&str, tar::EntryType)]) -> Vec<u8> {
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let mut t = tar::Builder::new(gz);
            for (name, kind) in entries {
                let mut h = tar::Header::new_ustar();
                // Raw name bytes: the tar crate refuses to write "..", which is the point here.
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_entry_type(*kind);
                h.set_size(if kind.is_file() { 2 } else { 0 });
                h.set_mode(0o755);
                if kind.is_symlink() || kind.is_hard_link() {
                    h.set_link_name("banger").unwrap();
                }
                h.set_cksum();
                let data: &[u8] = if kind.is_file() { b"x\n" } else { b"" };
                t.append(&h, data).unwrap();
            }
            t.into_inner().unwrap().finish().unwrap()
        }
        use tar::EntryType as E;
        let ok = [
            ("banger", E::Regular),
            ("bangerd", E::Regular),
            ("bangerd-root", E::Regular),
        ];
        assert_eq!(read_tarball(&tarball(&ok)).unwrap().len(), 3);
        let cases: Vec<(Vec<(&str, E)>, &str)> = vec![
            (ok[..2].to_vec(), "missing"),
            (
                [&ok[..], &[("extra", E::Regular)]].concat(),
                "unexpected entry",
            ),
            ([&ok[..], &[("banger", E::Regular)]].concat(), "twice"),
            (
                vec![ok[0], ok[1], ("bangerd-root", E::Symlink)],
                "not a regular file",
            ),
            (
                vec![ok[0], ok[1], ("bangerd-root", E::Link)],
                "not a regular file",
            ),
            (
                vec![ok[0], ok[1], ("bangerd-root", E::Char)],
                "not a regular file",
            ),
            (
                [&ok[..], &[("../evil", E::Regular)]].concat(),
                "unexpected entry",
            ),
        ];
        for (entries, want) in cases {
            let e = format!("{:#}", read_tarball(&tarball(&entries)).unwrap_err());
            assert!(e.contains(want), "{entries:?}: want {want:?}: {e}");
        }
        let e = format!("{:#}", read_tarball(b"not gzip at all").unwrap_err());
        assert!(!e.is_empty());
    }

    #[test]
    fn signatures_interoperate_with_openssl() {
        let tmp = tempfile::tempdir().unwrap();
        let data_path = tmp.path().join("SHA256SUMS");
        // ECDSA is randomized on openssl's side: several rounds cover low-S and high-S.
        for round in 0..6 {
            let data = format!("{round:064x}  banger-0.2.0-x86_64-unknown-linux-gnu.tar.gz\n");
            fs::write(&data_path, &data).unwrap();
            let (key, public) = openssl_key(tmp.path(), &format!("k{round}"));

            // Ours, checked by openssl.
            let ours = sign(&load_signing_key(&key).unwrap(), data.as_bytes());
            assert!(!ours.contains('\n'));
            let der = tmp.path().join("ours.der");
            fs::write(
                &der,
                base64::engine::general_purpose::STANDARD
                    .decode(&ours)
                    .unwrap(),
            )
            .unwrap();
            let out = openssl(&[
                "dgst",
                "-sha256",
                "-verify",
                s(&public),
                "-signature",
                s(&der),
                s(&data_path),
            ]);
            assert_eq!(String::from_utf8_lossy(&out).trim(), "Verified OK");

            // openssl's, checked by banger's verifier.
            let theirs = openssl(&["dgst", "-sha256", "-sign", s(&key), s(&data_path)]);
            let theirs = base64::engine::general_purpose::STANDARD.encode(theirs);
            verify_signature(
                &keys_from(&public),
                "SHA256SUMS",
                data.as_bytes(),
                theirs.as_bytes(),
            )
            .expect("an openssl signature verifies with banger_release");
            // And our public key export is what openssl derives.
            assert_eq!(
                public_key_pem(&load_signing_key(&key).unwrap()),
                fs::read_to_string(&public).unwrap()
            );
        }
    }

    #[test]
    fn keys_load_from_sec1_with_parameters_and_pkcs8_and_bad_ones_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let with_params = tmp.path().join("params.pem");
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            s(&with_params),
        ]);
        let a = load_signing_key(&with_params).unwrap();
        let pkcs8 = tmp.path().join("pkcs8.pem");
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            s(&with_params),
            "-out",
            s(&pkcs8),
        ]);
        assert!(
            fs::read_to_string(&pkcs8)
                .unwrap()
                .contains("BEGIN PRIVATE KEY")
        );
        let b = load_signing_key(&pkcs8).unwrap();
        assert_eq!(public_key_pem(&a), public_key_pem(&b));

        let other_curve = tmp.path().join("p384.pem");
        openssl(&[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            s(&other_curve),
        ]);
        let e = format!("{:#}", load_signing_key(&other_curve).unwrap_err());
        assert!(e.contains("p384.pem") && e.contains("P-256"), "{e}");
        let public = tmp.path().join("pub.pem");
        openssl(&["ec", "-in", s(&with_params), "-pubout", "-out", s(&public)]);
        let e = format!("{:#}", load_signing_key(&public).unwrap_err());
        assert!(
            e.contains("pub.pem") && e.contains("no 'EC PRIVATE KEY'"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            load_signing_key(&tmp.path().join("absent.pem")).unwrap_err()
        );
        assert!(e.contains("absent.pem"), "{e}");
    }
}
