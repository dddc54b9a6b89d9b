//! Manifest tests: a good manifest resolves fully; every bad manifest in
//! `testdata/bad/` fails with exactly the text in its `.err` file
//! (set `WEDGE_BLESS=1` to rewrite those after a deliberate change).

use super::*;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

#[test]
fn good_manifest_resolves_with_defaults_and_overrides() {
    let cli = LimitOverrides {
        queue: Some(99),
        timeout: Some(Duration::from_secs(7)),
        ..Default::default()
    };
    let app = load(&testdata(), &cli).unwrap();
    assert_eq!(app.server.listen, Some("127.0.0.1:0".parse().unwrap()));
    assert_eq!(app.server.shutdown_grace, Duration::from_secs(3));
    assert_eq!(app.server.health_prefix, DEFAULT_HEALTH_PREFIX);
    let hello = &app.functions[0];
    assert_eq!(hello.name, "hello");
    assert!(hello.source.is_absolute() && hello.source.ends_with("testdata/hello.wasm"));
    assert_eq!(
        hello.limits,
        Limits {
            timeout: Duration::from_millis(500),
            cpu_time: Some(Duration::from_millis(20)),
            max_memory: 2 << 20,
            fuel: Some(1_000_000_000),
            max_concurrency: 4,
            queue: 8,
            queue_timeout: Duration::from_secs(1),
            max_request_body: 1 << 20,
            max_response_body: 8 << 20,
        }
    );
    assert_eq!(
        hello.env,
        vec![
            ("SHARED".into(), "yes".into()),
            ("GREETING".into(), "hi".into())
        ]
    );
    assert_eq!(hello.methods, Some(vec!["GET".into(), "POST".into()]));
    assert!(hello.files[0].read_only && hello.files[0].host.is_absolute());
    assert_eq!(hello.outbound.len(), 2);

    // [defaults] < command line < the function's own keys.
    let users = &app.functions[1];
    assert_eq!(users.abi, Some(Abi::Wagi));
    assert_eq!(
        users.limits.timeout,
        Duration::from_secs(7),
        "the flag beats [defaults]"
    );
    assert_eq!(
        users.limits.max_memory,
        16 << 20,
        "[defaults] beats built-ins"
    );
    assert_eq!(users.limits.queue, 99);
    assert_eq!(
        hello.limits.queue, 8,
        "the function's own key beats the flag"
    );

    let routed = app.router.route("/users/42").unwrap();
    assert_eq!(routed.target, 1);
    assert_eq!(app.router.route("/api/x/y").unwrap().target, 0);
    assert!(app.router.route("/nothing").is_none());
}

#[test]
fn single_module_serves_every_path() {
    let app = single(Path::new("dir/app.wasm"), &LimitOverrides::default());
    assert_eq!(app.functions[0].name, "app");
    assert_eq!(app.router.route("/any/path").unwrap().target, 0);
}

#[test]
fn bad_manifests_report_file_line_column_and_fix() {
    let dir = testdata().join("bad");
    let bless = std::env::var_os("WEDGE_BLESS").is_some();
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let err = load(&path, &LimitOverrides::default())
            .expect_err(&format!("{} should fail", path.display()))
            .to_string()
            .replace(&format!("{}/", dir.display()), "");
        let expected_path = path.with_extension("err");
        if bless {
            std::fs::write(&expected_path, format!("{err}\n")).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        assert_eq!(err, expected.trim_end_matches('\n'), "{}", path.display());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            err.starts_with(&format!("{name}:")),
            "names the file: {err}"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} bad manifests");
}

#[test]
fn canaries_resolve_with_weights_header_and_sticky_cookie() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(testdata().join("hello.wasm"), dir.path().join("a.wasm")).unwrap();
    std::fs::copy(testdata().join("hello.wasm"), dir.path().join("b.wasm")).unwrap();
    let text = "[[function]]\nname = \"api\"\nsource = \"a.wasm\"\nroutes = [\"/api/...\"]\n\
                version = \"v1.1\"\nversion_header = \"X-Wasm-Version\"\nsticky = \"cookie:sid\"\n\
                env = { A = \"1\", B = \"2\" }\n\n\
                [[function.canary]]\nversion = \"v1.2-beta\"\nsource = \"b.wasm\"\nweight = 5.25\n\
                env = { B = \"3\" }\n";
    let file = dir.path().join("wedge.toml");
    let app = parse(&file, text, &LimitOverrides::default()).unwrap();
    let f = &app.functions[0];
    assert_eq!(f.version.as_deref(), Some("v1.1"));
    assert_eq!(f.traffic.header, "x-wasm-version");
    assert_eq!(f.traffic.sticky, Some(Sticky::Cookie("sid".into())));
    assert_eq!(f.traffic.stable_weight(), 10_000 - 525);
    let c = &f.traffic.canaries[0];
    assert_eq!((c.version.as_str(), c.weight), ("v1.2-beta", 525));
    assert!(c.source.ends_with("b.wasm"));
    assert_eq!(
        c.env,
        vec![("A".to_string(), "1".to_string()), ("B".into(), "3".into())]
    );
}

#[test]
fn an_mqtt_trigger_resolves_with_defaults_and_its_function_needs_no_routes() {
    let dir = testdata().join("bad");
    let text = r#"
[[function]]
name = "thumbnail"
source = "hello.wasm"

[[trigger.mqtt]]
broker = "mqtt://127.0.0.1:1884"
client_id = "edge-01-thumbnails"
topics = ["sensors/+/image"]
function = "thumbnail"
max_in_flight = 8
retry = { attempts = 5, backoff = "linear", delay = "50ms", max_delay = "1s" }
dead_letter_topic = "dlq/thumbnails"
reply_topic = "results/thumbnails"
username = "edge"
password_env = "WEDGE_TEST_MQTT_PASSWORD"
"#;
    let app = parse(&dir.join("wedge.toml"), text, &LimitOverrides::default()).unwrap();
    assert!(app.functions[0].routes.is_empty());
    let t = &app.triggers.mqtt[0];
    assert_eq!(t.broker.to_string(), "mqtt://127.0.0.1:1884");
    assert_eq!((t.qos, t.max_in_flight), (1, 8));
    assert_eq!(t.retry.attempts, 5);
    assert_eq!(t.retry.delay_before(3), Duration::from_millis(100));
    assert_eq!(t.dead_letter_topic.as_deref(), Some("dlq/thumbnails"));
    assert_eq!(t.content_type, "application/octet-stream");
    assert_eq!(t.max_message_size, 1 << 20);
    assert_eq!(
        t.password,
        Some(mqtt::Secret::Env("WEDGE_TEST_MQTT_PASSWORD".into()))
    );
    // Without a trigger naming it, a function still needs routes.
    let routeless = text.split("[[trigger.mqtt]]").next().unwrap();
    let err = parse(
        &dir.join("wedge.toml"),
        routeless,
        &LimitOverrides::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("has no `routes`"), "{err}");
}
