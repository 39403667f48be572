//! OCI images for banger: what `banger image pull oci://REGISTRY/REPO:TAG` is made of.
//!
//! - [`reference`]: parsing and checking an image reference before anything is fetched.
//! - [`layer`]: applying an image's layers, in order, into a directory that becomes the root
//!   filesystem, with whiteouts, and refusing every entry that could reach outside it or that a
//!   root filesystem built by an unprivileged daemon must not carry (device nodes, `..`, paths
//!   through symbolic links, links to nowhere), under caps on bytes and entries.
//!
//! - [`manifest`]: manifests, indexes (narrowed to linux/amd64) and configurations, OCI's and
//!   Docker's schema 2.
//! - [`registry`]: the distribution API's pulls: manifest, configuration and layer blobs, each
//!   verified by digest and bounded by its descriptor's size, through `banger-fetch`.
//! - [`rootfs`]: the checks that the image can boot as a banger VM (an init, an SSH server) and
//!   the sparse ext4 image written from the tree with the recorded ownership.
//!
//! Ownership and modes are not applied on disk (the daemon runs as the owner): they are kept
//! in [`layer::Tree::meta`], for the step that writes the filesystem image.

pub mod layer;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod rootfs;
