//! The invocation pipeline on its own, with no listener: an event-shaped
//! invocation (a POST carrying CloudEvents headers, as a message trigger
//! builds it) runs real guests through the table, gate and executor, and
//! every failure comes back classed for the trigger to answer.

use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wedge_executor::failure::{Class, Failure};
use wedge_executor::function::Loader;
use wedge_executor::invocation::{Invocation, Peer, Route};
use wedge_manifest::LimitOverrides;
use wedge_observe::metrics::Metrics;
use wedge_runtime::engine::{self, EngineOptions};
use wedge_runtime::ticker::Clock;
use wedge_trigger::pipeline::{Ending, Pipeline, Record};
use wedge_trigger::table::{Table, Version};

fn guest(rel: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guests");
    root.join(rel).display().to_string()
}

fn table(metrics: &Arc<Metrics>) -> Table {
    let text = format!(
        "[[function]]\nname = \"hello\"\nsource = \"{}\"\nroutes = [\"/hello\"]\n\
         max_concurrency = 1\nqueue = 0\n\n\
         [[function]]\nname = \"divzero\"\nsource = \"{}\"\nroutes = [\"/divzero\"]\n",
        guest("wat/wagi/hello.wat"),
        guest("wat/divzero.wat"),
    );
    let app = wedge_manifest::parse(Path::new("wedge.toml"), &text, &LimitOverrides::default())
        .expect("manifest");
    let engine = engine::build(EngineOptions { fuel: false }).expect("engine");
    let loader = Loader {
        engine: &engine,
        cache: None,
        metrics,
        clock: &Clock::none(),
    };
    Table::load(&app, loader).expect("table")
}

/// A message as a trigger hands it over: CloudEvents binary mode.
fn event(id: &str, path: &str) -> Invocation<'static> {
    let (head, ()) = http::Request::post(path)
        .header("ce-specversion", "1.0")
        .header("ce-type", "sensor.reading")
        .header("ce-id", id)
        .body(())
        .unwrap()
        .into_parts();
    let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
    Invocation {
        id: "evt-1",
        head,
        body: bytes::Bytes::from_static(b"{\"t\":21.5}").into(),
        peer: Peer {
            remote: addr,
            local: addr,
            tls: false,
        },
        route: Route {
            template: "/...",
            script_name: "",
            path_info: "/",
            params: &[],
        },
        trace: None,
        tracer: None,
    }
}

fn version<'t>(t: &'t Table, name: &str) -> &'t Arc<Version> {
    t.functions
        .iter()
        .find(|f| f.name == name)
        .expect("function")
        .stable()
}

#[tokio::test]
async fn an_event_runs_through_the_same_pipeline_and_failures_come_back_classed() {
    let metrics = Arc::new(Metrics::default());
    let t = table(&metrics);
    let pipeline = Pipeline::new(metrics.clone());

    // Success: the guest's response, with what the call cost.
    let hello = version(&t, "hello");
    let mut record = Record::default();
    record.chose(hello, 1);
    let response = pipeline
        .invoke(hello, event("e1", "/hello"), &mut record)
        .await
        .expect("hello answers");
    assert_eq!(response.status(), 200);
    assert!(record.guest.is_some_and(|g| g.guest > Duration::ZERO));
    assert!(record.queued.is_some() && record.guest_start.is_some());

    // While the first response's body is unread, it holds hello's only
    // slot (queue 0): the next event is turned away as busy, not run.
    let mut busy = Record::default();
    busy.chose(hello, 1);
    let failure = pipeline
        .invoke(hello, event("e2", "/hello"), &mut busy)
        .await
        .expect_err("the slot is taken");
    assert_eq!(failure, Failure::QueueFull);
    assert_eq!(failure.class(), Class::Busy);
    let ending = Ending::Failed {
        failure: &failure,
        answer: "retry",
    };
    pipeline.finish(&busy, "e2", ending, Duration::from_millis(1));

    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello from wagi\n");
    pipeline.finish(
        &record,
        "e1",
        Ending::Answered(200),
        Duration::from_millis(1),
    );
    // The body is done with: the slot is free again.
    let mut again = Record::default();
    let response = pipeline
        .invoke(hello, event("e3", "/hello"), &mut again)
        .await
        .expect("the slot came back");
    drop(response);

    // A trap: a guest failure, counted as the function's error.
    let divzero = version(&t, "divzero");
    let mut trapped = Record::default();
    trapped.chose(divzero, 1);
    let failure = pipeline
        .invoke(divzero, event("e4", "/divzero"), &mut trapped)
        .await
        .expect_err("divides by zero");
    assert!(matches!(failure, Failure::Trap { .. }), "{failure:?}");
    assert_eq!(failure.class(), Class::Guest);
    let ending = Ending::Failed {
        failure: &failure,
        answer: "dead-letter",
    };
    pipeline.finish(&trapped, "e4", ending, Duration::from_millis(1));

    let text = metrics.render(false, |_| {});
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle} in\n{text}"))
            .to_string()
    };
    // Busy is a rejection, a trap an error of the function.
    let rejected = "wedge_rejected_total{function=\"hello\",reason=\"queue-full\"}";
    assert!(line(rejected).ends_with(" 1"));
    assert!(line("faas_errors_total{function=\"divzero\",reason=\"trap\"}").ends_with(" 1"));
    assert!(!text.contains("faas_errors_total{function=\"hello\""));
    assert!(line("faas_invocations_total{function=\"hello\"}").ends_with(" 2"));
    // The rollout tally counts what finished: the trap as an error, and on
    // hello the busy event as one of its two.
    assert_eq!(divzero.spec.metrics.tally.snapshot().errors, 1);
    let hello_tally = hello.spec.metrics.tally.snapshot();
    assert_eq!((hello_tally.requests, hello_tally.errors), (2, 1));
}
