//! The proxies in `src/proxies.rs`, the checked-in introspection XML in `dbus/` and
//! docs/dbus-api.md name the same members. (The services' side is checked by the interface
//! tests of `bangerd` and `bangerd-root`, which compare what they serve with the same XML.) A
//! method added to an interface but missing from the proxy, the XML or the reference fails
//! here, naming it.

use std::collections::BTreeSet;
use std::path::Path;

/// (kind, name) of every member of every interface, by interface.
type Members = std::collections::BTreeMap<String, BTreeSet<(String, String)>>;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `get_vm_network` → `GetVmNetwork`, as zbus names members.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// The value of `attr="…"` in an XML start tag.
fn attr(tag: &str, attr: &str) -> Option<String> {
    let start = tag.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_string())
}

fn xml_members() -> Members {
    let mut out = Members::new();
    for entry in std::fs::read_dir(root().join("dbus")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "xml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut current: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if line.starts_with("<interface ") {
                current = attr(line, "name");
            } else if line.starts_with("</interface>") {
                current = None;
            } else if let Some(iface) = &current {
                for kind in ["method", "signal", "property"] {
                    if line.starts_with(&format!("<{kind} ")) {
                        let name = attr(line, "name").expect("a member has a name");
                        out.entry(iface.clone())
                            .or_default()
                            .insert((kind.to_string(), name));
                    }
                }
            }
        }
    }
    out
}

fn proxy_members() -> Members {
    let text = std::fs::read_to_string(root().join("banger/api/src/proxies.rs")).unwrap();
    let mut out = Members::new();
    let mut current: Option<String> = None;
    let mut kind = "method";
    let mut renamed: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("interface = \"") {
            current = rest.split('"').next().map(str::to_string);
        } else if line.starts_with("#[zbus(property") {
            kind = "property";
            renamed = line
                .split("name = \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string);
        } else if line == "#[zbus(signal)]" {
            kind = "signal";
        } else if let Some(rest) = line.strip_prefix("fn ") {
            let name = rest.split(['(', '<']).next().unwrap();
            let iface = current
                .clone()
                .expect("a proxy method inside a proxy trait");
            let name = renamed.take().unwrap_or_else(|| pascal(name));
            out.entry(iface)
                .or_default()
                .insert((kind.to_string(), name));
            kind = "method";
        }
    }
    out
}

#[test]
fn pascal_case_is_what_zbus_makes() {
    assert_eq!(pascal("get_vm_network"), "GetVmNetwork");
    assert_eq!(pascal("api_version"), "ApiVersion");
    assert_eq!(pascal("cancel"), "Cancel");
}

#[test]
fn proxies_and_xml_name_the_same_members() {
    let (xml, proxies) = (xml_members(), proxy_members());
    assert!(
        xml.len() >= 3 && xml.values().map(BTreeSet::len).sum::<usize>() > 40,
        "the XML was not read: {xml:?}"
    );
    let interfaces: BTreeSet<&String> = xml.keys().chain(proxies.keys()).collect();
    let mut problems = Vec::new();
    for iface in interfaces {
        let empty = BTreeSet::new();
        let (x, p) = (
            xml.get(iface).unwrap_or(&empty),
            proxies.get(iface).unwrap_or(&empty),
        );
        for (kind, name) in x.difference(p) {
            problems.push(format!(
                "{iface}: {kind} {name} is in dbus/ but not in proxies.rs"
            ));
        }
        for (kind, name) in p.difference(x) {
            problems.push(format!(
                "{iface}: {kind} {name} is in proxies.rs but not in dbus/"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reference_documents_every_member() {
    let doc = std::fs::read_to_string(root().join("docs/dbus-api.md")).unwrap();
    let mut missing = Vec::new();
    for (iface, members) in xml_members() {
        for (kind, name) in members {
            if !doc.contains(&format!("`{name}")) && !doc.contains(&format!("{name}(")) {
                missing.push(format!("{iface}: {kind} {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/dbus-api.md does not mention:\n{}",
        missing.join("\n")
    );
}

#[test]
fn job_property_words_are_the_job_interface_properties() {
    let xml = xml_members();
    let in_xml: BTreeSet<String> = xml[banger_api::names::JOB_INTERFACE]
        .iter()
        .filter(|(kind, _)| kind == "property")
        .map(|(_, name)| name.clone())
        .collect();
    let words: BTreeSet<String> = banger_api::job::JobProperty::ALL
        .iter()
        .map(|p| p.as_str().to_string())
        .collect();
    assert_eq!(words, in_xml);
}

#[test]
fn object_property_words_are_the_object_interface_properties() {
    let xml = xml_members();
    let props = |iface: &str| -> BTreeSet<String> {
        xml[iface]
            .iter()
            .filter(|(kind, _)| kind == "property")
            .map(|(_, name)| name.clone())
            .collect()
    };
    let vm: BTreeSet<String> = banger_api::objects::VmProperty::ALL
        .iter()
        .map(|p| p.as_str().to_string())
        .collect();
    assert_eq!(vm, props(banger_api::names::DAEMON_VM_INTERFACE));
    let image: BTreeSet<String> = banger_api::objects::ImageProperty::ALL
        .iter()
        .map(|p| p.as_str().to_string())
        .collect();
    assert_eq!(image, props(banger_api::names::DAEMON_IMAGE_INTERFACE));
    let job: BTreeSet<String> = banger_api::job::DaemonJobProperty::ALL
        .iter()
        .map(|p| p.as_str().to_string())
        .collect();
    assert_eq!(job, props(banger_api::names::DAEMON_JOB_INTERFACE));
}
