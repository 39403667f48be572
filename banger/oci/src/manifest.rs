//! Manifests, indexes and image configurations, as registries serve them: the OCI image spec's
//! and Docker's schema 2 (the two are the same shapes under other media types).
//!
//! Fields banger does not use (annotations, history, …) are ignored; the ones it uses are
//! checked: schema version 2, `sha256:` digests, sizes, and media types it knows how to apply.

use serde::Deserialize;

/// An OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's manifest list (an index).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What banger asks a registry for, in order of preference.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// An OCI image configuration.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker's image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The platform banger runs guests of.
pub const OS: &str = "linux";
/// The architecture banger runs guests of.
pub const ARCH: &str = "amd64";

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct ManifestError {
    /// Which document (`the manifest of oci://…`).
    pub what: String,
    /// What is wrong.
    pub why: String,
}

/// A content descriptor: what a manifest says about a blob or another manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// `sha256:` and 64 lowercase hex digits.
    pub digest: String,
    /// Its exact size in bytes.
    pub size: u64,
    /// For an index's entries: the platform of that manifest.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Other places to fetch it from ("non-distributable" layers): never used.
    #[serde(default)]
    pub urls: Vec<String>,
}

/// A manifest's platform, in an index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `linux`, `windows`, …
    pub os: String,
    /// `v8`, …
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// An image manifest: its configuration and its layers, lowest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The configuration blob.
    pub config: Descriptor,
    /// The layers, applied in this order.
    pub layers: Vec<Descriptor>,
}

/// What a manifest request returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// An index: one manifest per platform.
    Index(Vec<Descriptor>),
    /// An image manifest.
    Manifest(Manifest),
}

/// How a layer is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// A plain tar.
    Tar,
    /// A gzip-compressed tar.
    TarGzip,
}

/// Checks a digest: `sha256:` and 64 lowercase hex digits (the only algorithm banger verifies).
pub fn check_digest(d: &str) -> Result<&str, String> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(format!("digest {d:?} has no algorithm"));
    };
    if alg != "sha256" {
        return Err(format!(
            "digest {d:?} uses {alg:?}; banger verifies sha256 digests only"
        ));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "digest {d:?} is not sha256: and 64 lowercase hex digits"
        ));
    }
    Ok(hex)
}

fn check_descriptor(d: &Descriptor, role: &str) -> Result<(), String> {
    check_digest(&d.digest).map_err(|e| format!("{role}: {e}"))?;
    if !d.urls.is_empty() {
        return Err(format!(
            "{role} {} is to be fetched from other URLs (a non-distributable layer), which banger does not do",
            d.digest
        ));
    }
    Ok(())
}

/// Parses a manifest response. `content_type` is the response's `Content-Type`, if any; a
/// document without one is known by its `mediaType` or its shape.
pub fn parse(
    bytes: &[u8],
    content_type: Option<&str>,
    what: &str,
) -> Result<Document, ManifestError> {
    let err = |why: String| ManifestError {
        what: what.into(),
        why,
    };
    let raw: RawDocument =
        serde_json::from_slice(bytes).map_err(|e| err(format!("not a manifest: {e}")))?;
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain");
    let media = header.or(raw.media_type.as_deref());
    let is_index = match media {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(err(format!(
                "media type {other:?} is not an image manifest or index"
            )));
        }
        None => raw.manifests.is_some(),
    };
    if raw.schema_version != Some(2) {
        return Err(err(format!(
            "schemaVersion is {}, not 2{}",
            raw.schema_version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "missing".into()),
            if raw.schema_version == Some(1) {
                " (Docker's schema 1 is obsolete and unsigned-verifiable; push the image again with a current tool)"
            } else {
                ""
            }
        )));
    }
    if is_index {
        let manifests = raw
            .manifests
            .ok_or_else(|| err("an index without \"manifests\"".into()))?;
        for (i, d) in manifests.iter().enumerate() {
            check_descriptor(d, &format!("manifest {}", i + 1)).map_err(err)?;
        }
        return Ok(Document::Index(manifests));
    }
    let config = raw
        .config
        .ok_or_else(|| err("a manifest without \"config\"".into()))?;
    let layers = raw
        .layers
        .ok_or_else(|| err("a manifest without \"layers\"".into()))?;
    check_descriptor(&config, "the configuration").map_err(err)?;
    if config.media_type != OCI_CONFIG && config.media_type != DOCKER_CONFIG {
        return Err(err(format!(
            "its configuration has media type {:?}: it is not a container image (an artifact?)",
            config.media_type
        )));
    }
    if layers.is_empty() {
        return Err(err("the image has no layers".into()));
    }
    for (i, d) in layers.iter().enumerate() {
        check_descriptor(d, &format!("layer {}", i + 1)).map_err(err)?;
        layer_type(d).map_err(|why| err(format!("layer {}: {why}", i + 1)))?;
    }
    Ok(Document::Manifest(Manifest { config, layers }))
}

/// How to read a layer, from its media type.
pub fn layer_type(d: &Descriptor) -> Result<LayerType, String> {
    match d.media_type.as_str() {
        "application/vnd.oci.image.layer.v1.tar" => Ok(LayerType::Tar),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Ok(LayerType::TarGzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Err(format!(
            "{} is zstd-compressed, which banger does not unpack yet; push it with gzip layers",
            d.digest
        )),
        t if t.contains("nondistributable") || t.contains("foreign") => Err(format!(
            "{} is a non-distributable layer ({t}), which banger does not fetch",
            d.digest
        )),
        t => Err(format!(
            "{} has media type {t:?}, which is not a layer banger unpacks",
            d.digest
        )),
    }
}

/// The entry of an index for [`OS`]/[`ARCH`], or an error listing what the index offers.
pub fn pick_platform<'a>(
    manifests: &'a [Descriptor],
    what: &str,
) -> Result<&'a Descriptor, ManifestError> {
    let ours = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == OS && p.architecture == ARCH)
    };
    if let Some(d) = manifests.iter().find(ours) {
        return Ok(d);
    }
    let offered: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect();
    Err(ManifestError {
        what: what.into(),
        why: format!(
            "the index has no {OS}/{ARCH} image (it offers: {})",
            if offered.is_empty() {
                "no platform at all".to_string()
            } else {
                offered.join(", ")
            }
        ),
    })
}

/// The parts of an image configuration banger checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageConfig {
    /// Must be [`ARCH`].
    pub architecture: String,
    /// Must be [`OS`].
    pub os: String,
    /// The layers' uncompressed digests, one per layer.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// `rootfs` of an image configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RootFs {
    /// The uncompressed digest of each layer.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// Parses and checks an image configuration against its manifest.
pub fn parse_config(
    bytes: &[u8],
    manifest: &Manifest,
    what: &str,
) -> Result<ImageConfig, ManifestError> {
    let err = |why: String| ManifestError {
        what: what.into(),
        why,
    };
    let c: ImageConfig = serde_json::from_slice(bytes)
        .map_err(|e| err(format!("not an image configuration: {e}")))?;
    if c.os != OS || c.architecture != ARCH {
        return Err(err(format!(
            "the image is for {}/{}; banger runs {OS}/{ARCH} guests",
            c.os, c.architecture
        )));
    }
    if let Some(r) = &c.rootfs
        && !r.diff_ids.is_empty()
        && r.diff_ids.len() != manifest.layers.len()
    {
        return Err(err(format!(
            "it lists {} layers, the manifest {}",
            r.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest_json(layer_type: &str, config_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
               "config":{{"mediaType":"{config_type}","digest":"{D1}","size":10}},
               "layers":[{{"mediaType":"{layer_type}","digest":"{D2}","size":20}}],
               "annotations":{{"x":"y"}}}}"#
        )
    }

    #[test]
    fn manifests_and_indexes_parse_by_header_media_type_or_shape() {
        let m = manifest_json("application/vnd.oci.image.layer.v1.tar+gzip", OCI_CONFIG);
        let Document::Manifest(parsed) = parse(m.as_bytes(), Some(OCI_MANIFEST), "m").unwrap()
        else {
            panic!("not a manifest");
        };
        assert_eq!(parsed.layers[0].digest, D2);
        assert_eq!(layer_type(&parsed.layers[0]), Ok(LayerType::TarGzip));
        // Without a Content-Type, by mediaType.
        assert!(matches!(
            parse(m.as_bytes(), None, "m"),
            Ok(Document::Manifest(_))
        ));

        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[
                {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
                {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":6,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        // By shape: no header, no mediaType.
        let Document::Index(list) = parse(index.as_bytes(), Some("application/json"), "i").unwrap()
        else {
            panic!("not an index");
        };
        assert_eq!(pick_platform(&list, "i").unwrap().digest, D2);
        let e = pick_platform(&list[..1], "the index of x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the index of x: the index has no linux/amd64 image (it offers: linux/arm64/v8)"
        );
    }

    #[test]
    fn hostile_or_foreign_documents_are_refused_naming_the_fault() {
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "not a manifest"),
            (
                r#"{"schemaVersion":1,"fsLayers":[]}"#.into(),
                "schemaVersion is 1, not 2 (Docker's schema 1",
            ),
            (r#"{"layers":[]}"#.into(), "schemaVersion is missing"),
            (
                manifest_json("application/vnd.oci.image.layer.v1.tar+zstd", OCI_CONFIG),
                "zstd-compressed",
            ),
            (
                manifest_json(
                    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                    OCI_CONFIG,
                ),
                "non-distributable",
            ),
            (
                manifest_json(
                    "application/vnd.oci.image.layer.v1.tar",
                    "application/vnd.cncf.helm.config.v1+json",
                ),
                "it is not a container image",
            ),
            (
                manifest_json("text/html", OCI_CONFIG),
                "not a layer banger unpacks",
            ),
            (
                manifest_json("application/vnd.oci.image.layer.v1.tar", OCI_CONFIG)
                    .replace(D2, "sha512:ab"),
                "banger verifies sha256 digests only",
            ),
            (
                manifest_json("application/vnd.oci.image.layer.v1.tar", OCI_CONFIG)
                    .replace(D2, "sha256:../../etc"),
                "is not sha256: and 64 lowercase hex digits",
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":1}},"layers":[]}}"#
                ),
                "the image has no layers",
            ),
        ];
        for (doc, want) in cases {
            let e = parse(doc.as_bytes(), None, "the manifest")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{doc}: {e} lacks {want:?}");
        }
        let e = parse(b"{}", Some("text/html; charset=utf-8"), "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"text/html\" is not an image manifest"), "{e}");
    }

    #[test]
    fn configurations_are_checked_against_the_platform_and_the_manifest() {
        let m = Manifest {
            config: Descriptor {
                media_type: OCI_CONFIG.into(),
                digest: D1.into(),
                size: 1,
                platform: None,
                urls: vec![],
            },
            layers: vec![],
        };
        let ok =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert!(parse_config(ok, &m, "c").is_ok());
        let arm = br#"{"architecture":"arm64","os":"linux"}"#;
        assert!(
            parse_config(arm, &m, "c")
                .unwrap_err()
                .to_string()
                .contains("the image is for linux/arm64")
        );
        let more = br#"{"architecture":"amd64","os":"linux","rootfs":{"diff_ids":["a","b"]}}"#;
        assert!(
            parse_config(more, &m, "c")
                .unwrap_err()
                .to_string()
                .contains("it lists 2 layers, the manifest 0")
        );
    }
}
