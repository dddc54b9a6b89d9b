//! The Wasm OCI artifact layout of the CNCF TAG Runtime: what `wedge push`
//! writes, and how `wedge pull` finds the module in what it reads (that
//! layout, and the older one with a `vnd.wasm.content.layer.v1+wasm`
//! layer). Pure functions over bytes: no network, no files.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest media type wedge writes and reads.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config of a Wasm artifact (TAG Runtime layout).
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The one layer of a Wasm artifact (TAG Runtime layout).
pub const WASM_LAYER: &str = "application/wasm";
/// The layer of the older layout (wasm-to-oci, early Spin and Krustlet).
pub const OLD_WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";

/// The largest manifest or config read from a registry.
pub const MAX_MANIFEST: usize = 4 << 20;

/// `sha256:` and the hex digest of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A content descriptor: what a manifest says of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// An image manifest, as far as wedge reads or writes one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// The TAG Runtime config of a Wasm artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub architecture: String,
    /// `wasip1` for a core module, `wasip2` for a component.
    pub os: String,
    pub layer_digests: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<Component>,
}

/// What a component imports and exports (interfaces and functions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

/// The blobs and manifest of one module as an artifact.
pub struct Artifact {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layer_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

/// Builds the artifact for `wasm`. No timestamps: the same module always
/// gives the same digests, so pushing it twice changes nothing.
pub fn build(wasm: &[u8]) -> Result<Artifact, String> {
    let report = wedge_inspect::inspect(wasm).map_err(|e| format!("not WebAssembly: {e}"))?;
    let layer_digest = digest(wasm);
    let component = (report.kind == "component").then(|| Component {
        exports: report.exports.iter().map(|i| i.name.clone()).collect(),
        imports: report.imports.iter().map(|i| i.name.clone()).collect(),
    });
    let config = Config {
        architecture: "wasm".into(),
        os: if component.is_some() {
            "wasip2"
        } else {
            "wasip1"
        }
        .into(),
        layer_digests: vec![layer_digest.clone()],
        component,
    };
    let config = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
    let config_digest = digest(&config);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST.into()),
        config: Descriptor {
            media_type: WASM_CONFIG.into(),
            digest: config_digest.clone(),
            size: config.len() as u64,
        },
        layers: vec![Descriptor {
            media_type: WASM_LAYER.into(),
            digest: layer_digest.clone(),
            size: wasm.len() as u64,
        }],
    };
    let manifest = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    Ok(Artifact {
        manifest_digest: digest(&manifest),
        config,
        config_digest,
        layer_digest,
        manifest,
    })
}

/// The module's layer in a manifest read from a registry: the one layer of
/// a Wasm media type, in either layout. `Err` says what the artifact is
/// instead.
pub fn wasm_layer(raw: &[u8]) -> Result<Descriptor, String> {
    let manifest: Manifest = serde_json::from_slice(raw).map_err(|e| {
        format!(
            "not an OCI image manifest ({e}); an index or a Docker v2 list is not a Wasm artifact"
        )
    })?;
    let wasm: Vec<&Descriptor> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == WASM_LAYER || l.media_type == OLD_WASM_LAYER)
        .collect();
    match wasm.as_slice() {
        [one] => {
            if !valid_digest(&one.digest) {
                return Err(format!(
                    "the Wasm layer's digest `{}` is not a sha256 digest",
                    one.digest
                ));
            }
            Ok((*one).clone())
        }
        [] => {
            let kinds: Vec<&str> = manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect();
            Err(format!(
                "no Wasm layer (`{WASM_LAYER}` or `{OLD_WASM_LAYER}`): its config is `{}` and its layers are [{}] — is it a container image?",
                manifest.config.media_type,
                kinds.join(", ")
            ))
        }
        _ => Err(format!(
            "{} Wasm layers: wedge runs artifacts of one module",
            wasm.len()
        )),
    }
}

/// `sha256:` and 64 lowercase hex digits.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn a_module_becomes_the_tag_runtime_layout() {
        let a = build(MODULE).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], MANIFEST);
        assert_eq!(m["config"]["mediaType"], WASM_CONFIG);
        assert_eq!(m["config"]["digest"], a.config_digest);
        assert_eq!(m["layers"][0]["mediaType"], WASM_LAYER);
        assert_eq!(m["layers"][0]["digest"], digest(MODULE));
        assert_eq!(m["layers"][0]["size"], MODULE.len());
        let c: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(c["architecture"], "wasm");
        assert_eq!(c["os"], "wasip1");
        assert_eq!(c["layerDigests"][0], digest(MODULE));
        assert_eq!(a.manifest_digest, digest(&a.manifest));
    }

    #[test]
    fn the_same_module_gives_the_same_digest() {
        assert_eq!(
            build(MODULE).unwrap().manifest_digest,
            build(MODULE).unwrap().manifest_digest
        );
    }

    #[test]
    fn both_layouts_are_read_and_others_are_named() {
        let a = build(MODULE).unwrap();
        assert_eq!(wasm_layer(&a.manifest).unwrap().digest, digest(MODULE));
        let old = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.wasm.config.v1+json","digest":"{d}","size":2}},"layers":[{{"mediaType":"{OLD_WASM_LAYER}","digest":"{d}","size":8}}]}}"#,
            d = digest(MODULE)
        );
        assert_eq!(
            wasm_layer(old.as_bytes()).unwrap().media_type,
            OLD_WASM_LAYER
        );
        let image = old.replace(
            OLD_WASM_LAYER,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        );
        let err = wasm_layer(image.as_bytes()).unwrap_err();
        assert!(err.contains("is it a container image?"), "{err}");
        assert!(
            wasm_layer(b"{}")
                .unwrap_err()
                .contains("not an OCI image manifest")
        );
    }

    #[test]
    fn digests_are_checked_for_shape() {
        assert!(valid_digest(&digest(b"x")));
        assert!(!valid_digest("sha256:../../etc/passwd"));
        assert!(!valid_digest("sha512:00"));
    }
}
