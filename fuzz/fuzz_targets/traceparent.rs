//! The W3C `traceparent`/`tracestate` parser on arbitrary headers: a
//! context it accepts prints back as the same (lower-case) traceparent, and
//! a kept tracestate stays within the W3C bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wedge_telemetry::trace::Context;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (tp, state) = match text.split_once('\n') {
        Some((tp, state)) => (tp, Some(state)),
        None => (text, None),
    };
    if let Some(c) = Context::parse(tp, state) {
        let printed = c.traceparent();
        assert_eq!(printed.len(), 55);
        let again = Context::parse(&printed, None).expect("a printed context parses");
        assert_eq!((again.trace_id, again.span_id), (c.trace_id, c.span_id));
        assert_ne!(c.trace_id, [0; 16]);
        if let Some(s) = &c.tracestate {
            assert!(s.len() <= 512 && s.split(',').count() <= 32);
        }
    }
});
