//! Modules as OCI artifacts, against a real registry (Debian's
//! `docker-registry`) with an independent client (`skopeo`) checking what
//! `wedge push` wrote and pushing what wedge must read.

use crate::client::{Server, get};
use crate::support::{Sandbox, example, free_port, guest, s};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A `docker-registry` on 127.0.0.1 with its storage in a temporary folder.
struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
}

impl Registry {
    fn start() -> Registry {
        Registry::start_with(|_| String::new())
    }

    /// `auth` gives extra YAML for the config (under `auth:`), given the
    /// registry's folder.
    fn start_with(auth: impl Fn(&Path) -> String) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{}",
                dir.path().join("data").display(),
                auth(dir.path())
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", s(&config)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "docker-registry (Debian package docker-registry; scripts/test.sh installs it)",
            );
        let r = Registry { child, dir, addr };
        // Ready when its API answers (401 counts: it is up, and wants a login).
        for _ in 0..500 {
            let status = std::net::TcpStream::connect(&r.addr)
                .ok()
                .map(|_| crate::client::get(r.addr.parse().unwrap(), "/v2/").status);
            if matches!(status, Some(200 | 401)) {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("docker-registry did not start on {}", r.addr);
    }

    /// The file holding blob `digest` in the registry's storage.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// `skopeo inspect --raw` (or `--config --raw`) of `reference`, as JSON.
fn skopeo_inspect(reference: &str, config: bool) -> Value {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--tls-verify=false"]);
    if config {
        c.arg("--config");
    }
    let out = c
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo (Debian package skopeo; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `wedge ARGS` speaking plain HTTP to `registry`.
fn wedge(sb: &Sandbox, registry: &Registry, args: &[&str]) -> crate::support::Run {
    crate::support::Run::from(
        sb.wedge()
            .env("WEDGE_INSECURE_REGISTRIES", &registry.addr)
            .args(args)
            .output()
            .unwrap(),
    )
}

/// The manifest digest `wedge push` printed.
fn pushed_digest(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("manifest "))
        .expect("a manifest line")
        .to_string()
}

#[test]
fn a_pushed_component_has_the_tag_runtime_layout_and_serves_from_the_registry() {
    let sb = Sandbox::new();
    let mut registry = Registry::start();
    let module = example("c-http/demo.component.wasm");
    let bytes = std::fs::read(&module).unwrap();
    let reference = format!("{}/functions/demo:v1", registry.addr);
    let push = wedge(&sb, &registry, &["push", s(&module), &reference]);
    push.expect(0);
    let digest = pushed_digest(&push.stdout);

    // What an independent client reads back.
    let manifest = skopeo_inspect(&reference, false);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    assert_eq!(layers[0]["digest"], sha256(&bytes));
    assert_eq!(layers[0]["size"], bytes.len());
    let config = skopeo_inspect(&reference, true);
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"][0], sha256(&bytes));
    let exports = config["component"]["exports"].as_array().unwrap();
    assert!(
        exports.iter().any(|e| e
            .as_str()
            .unwrap()
            .starts_with("wasi:http/incoming-handler@0.2")),
        "{config}"
    );
    // The manifest digest wedge printed is the registry's.
    let by_digest = format!("{}/functions/demo@{digest}", registry.addr);
    assert_eq!(skopeo_inspect(&by_digest, false), manifest);
    // Pushing the same module again changes nothing.
    let again = wedge(&sb, &registry, &["push", s(&module), &reference]);
    assert_eq!(pushed_digest(&again.expect(0).stdout), digest);

    // Served from the registry, by tag.
    let toml = |source: &str| {
        format!("[[function]]\nname = \"demo\"\nsource = \"{source}\"\nroutes = [\"/demo/...\"]\n")
    };
    let addr = registry.addr.clone();
    let env = [("WEDGE_INSECURE_REGISTRIES", addr.as_str())];
    let manifest_path = sb.manifest(&toml(&format!("oci://{reference}")));
    {
        let srv = Server::start_with_env(&sb.cache_dir(), &["-f", &manifest_path], &env);
        assert_eq!(get(srv.addr, "/demo/hello").status, 200);
        srv.wait_for_log(&format!("pulled oci://{reference} ({digest})"));
    }
    // The registry goes away: a digest needs nothing from it, and a tag
    // falls back to what it named last time, saying so.
    registry.stop();
    let manifest_path = sb.manifest(&toml(&format!("oci://{by_digest}")));
    {
        let srv = Server::start_with_env(&sb.cache_dir(), &["-f", &manifest_path], &env);
        assert_eq!(get(srv.addr, "/demo/hello").status, 200);
        srv.wait_for_log("already pulled");
    }
    let manifest_path = sb.manifest(&toml(&format!("oci://{reference}")));
    let srv = Server::start_with_env(&sb.cache_dir(), &["-f", &manifest_path], &env);
    assert_eq!(get(srv.addr, "/demo/hello").status, 200);
    srv.wait_for_line(&["warn", "the registry did not answer", &digest]);
}

#[test]
fn a_tampered_blob_is_refused_and_nothing_is_kept() {
    let sb = Sandbox::new();
    let registry = Registry::start();
    let module = guest("c/hello.wasm");
    let bytes = std::fs::read(&module).unwrap();
    let reference = format!("{}/hello:v1", registry.addr);
    wedge(&sb, &registry, &["push", s(&module), &reference]).expect(0);
    // Someone with the registry's disk swaps the module for another of the
    // same size.
    let mut evil = bytes.clone();
    let last = evil.len() - 1;
    evil[last] ^= 0xff;
    std::fs::write(registry.blob_file(&sha256(&bytes)), &evil).unwrap();

    let pull = wedge(&sb, &registry, &["pull", &reference]);
    pull.expect(1);
    assert!(
        pull.stderr.contains("does not match its digest") && pull.stderr.contains(&sha256(&bytes)),
        "{}",
        pull.stderr
    );
    let blobs = sb.cache_dir().join("oci/blobs/sha256");
    let kept: Vec<_> = std::fs::read_dir(&blobs)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(kept.is_empty(), "left in the store: {kept:?}");
    // `wedge serve` refuses to start on it, naming the function.
    let toml = format!(
        "[[function]]\nname = \"hello\"\nsource = \"oci://{reference}\"\nroutes = [\"/...\"]\n"
    );
    let check = wedge(&sb, &registry, &["check", "-f", &sb.manifest(&toml)]);
    check.expect(1);
    assert!(
        check.stderr.contains("function `hello`") && check.stderr.contains("does not match"),
        "{}",
        check.stderr
    );
}

/// Writes an OCI image layout holding one artifact whose layer has
/// `layer_type`, for skopeo to push.
fn layout(dir: &Path, wasm: &[u8], config_type: &str, layer_type: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        d
    };
    let config = b"{}";
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": config_type, "digest": put(config), "size": config.len()},
        "layers": [{"mediaType": layer_type, "digest": put(wasm), "size": wasm.len()}],
    })
    .to_string();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(manifest.as_bytes()),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn skopeo_copy(from: &Path, to: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--preserve-digests"])
        .arg(format!("oci:{}:v1", from.display()))
        .arg(format!("docker://{to}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_older_layout_is_read_and_a_container_image_is_named_as_one() {
    let sb = Sandbox::new();
    let registry = Registry::start();
    let wasm = std::fs::read(guest("c/hello.wasm")).unwrap();
    let old = sb.path().join("old");
    layout(
        &old,
        &wasm,
        "application/vnd.wasm.config.v1+json",
        "application/vnd.wasm.content.layer.v1+wasm",
    );
    let reference = format!("{}/old:v1", registry.addr);
    skopeo_copy(&old, &reference);
    let pull = wedge(&sb, &registry, &["pull", &format!("oci://{reference}")]);
    pull.expect(0);
    let path = pull.stdout.lines().next().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), wasm);
    assert!(pull.stdout.contains("downloaded"));
    // Again: nothing to download.
    let again = wedge(&sb, &registry, &["pull", &reference]);
    assert!(again.expect(0).stdout.contains("already in the store"));

    let image = sb.path().join("image");
    layout(
        &image,
        &wasm,
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let reference = format!("{}/image:v1", registry.addr);
    skopeo_copy(&image, &reference);
    let pull = wedge(&sb, &registry, &["pull", &reference]);
    pull.expect(1);
    assert!(
        pull.stderr.contains("is it a container image?"),
        "{}",
        pull.stderr
    );
}

#[test]
fn credentials_come_from_the_docker_config() {
    let sb = Sandbox::new();
    let registry = Registry::start_with(|dir| {
        let htpasswd = dir.join("htpasswd");
        let out = Command::new("htpasswd")
            .args(["-Bbc", s(&htpasswd), "edge", "s3cret"])
            .output()
            .expect("htpasswd (Debian package apache2-utils; scripts/test.sh installs it)");
        assert!(out.status.success());
        format!(
            "auth:\n  htpasswd:\n    realm: wedge-test\n    path: {}\n",
            htpasswd.display()
        )
    });
    let module = guest("c/hello.wasm");
    let reference = format!("{}/private/hello:v1", registry.addr);
    // No credentials: the registry's refusal, said plainly.
    let refused = wedge(&sb, &registry, &["push", s(&module), &reference]);
    refused.expect(1);
    assert!(
        refused.stderr.to_lowercase().contains("unauthorized") || refused.stderr.contains("401"),
        "{}",
        refused.stderr
    );
    // A Docker config file with the login, as `docker login` writes it.
    let docker = sb.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let login = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"edge:s3cret");
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{login}"}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap();
    let with_config = |args: &[&str]| {
        crate::support::Run::from(
            sb.wedge()
                .env("WEDGE_INSECURE_REGISTRIES", &registry.addr)
                .env("DOCKER_CONFIG", &docker)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    with_config(&["push", s(&module), &reference]).expect(0);
    with_config(&["pull", &reference]).expect(0);
    // And from flags and the environment, without the config file.
    let pull = crate::support::Run::from(
        sb.wedge()
            .env("WEDGE_INSECURE_REGISTRIES", &registry.addr)
            .env("WEDGE_REGISTRY_PASSWORD", "s3cret")
            .args(["pull", &reference, "--registry-username", "edge"])
            .args(["--oci-store", s(&sb.path().join("other-store"))])
            .output()
            .unwrap(),
    );
    assert!(
        pull.expect(0).stdout.contains("downloaded"),
        "{}",
        pull.stdout
    );
}

/// `wedge deploy NAME oci://…` has the server pull the version itself;
/// a reference it cannot use is refused with the registry's reason.
#[test]
fn a_version_is_deployed_from_the_registry_through_the_admin_api() {
    let sb = Sandbox::new();
    let registry = Registry::start();
    let reference = format!("{}/bytes:v2", registry.addr);
    wedge(
        &sb,
        &registry,
        &["push", s(&guest("c/wagi/bytes.wasm")), &reference],
    )
    .expect(0);
    std::fs::copy(guest("c/wagi/env.wasm"), sb.path().join("v1.wasm")).unwrap();
    let manifest = sb.manifest(
        "[[function]]\nname = \"api\"\nsource = \"v1.wasm\"\nroutes = [\"/api\"]\nversion = \"v1\"\n",
    );
    let state = sb.path().join("state");
    let srv = Server::start_with_env(
        &sb.cache_dir(),
        &["-f", &manifest, "--state", s(&state)],
        &[("WEDGE_INSECURE_REGISTRIES", registry.addr.as_str())],
    );
    let token = sb.path().join("token");
    std::fs::write(&token, crate::client::ADMIN_TOKEN).unwrap();
    let admin = format!("http://{}", srv.admin);
    let deploy = |source: &str, version: &str| {
        sb.run(&[
            "deploy",
            "api",
            source,
            "--version",
            version,
            "--weight",
            "100",
            "--admin",
            &admin,
            "--admin-token-file",
            s(&token),
        ])
    };
    deploy(&format!("oci://{reference}"), "v2").expect(0);
    let r = get(srv.addr, "/api?5");
    assert_eq!(r.body, vec![0, 1, 2, 3, 4], "v2 (the registry's) serves");
    srv.wait_for_log(&format!("deploy: pulled oci://{reference}"));

    let missing = deploy(&format!("oci://{}/nothing:v9", registry.addr), "v3");
    missing.expect(1);
    assert!(
        missing.stderr.contains("manifest unknown"),
        "{}",
        missing.stderr
    );
    let bad = deploy("oci://no-repository", "v3");
    bad.expect(1);
    assert!(
        bad.stderr.contains("not an OCI reference"),
        "{}",
        bad.stderr
    );
    assert_eq!(
        get(srv.addr, "/api?3").body,
        vec![0, 1, 2],
        "v2 still serves"
    );
}
