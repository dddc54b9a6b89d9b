//! The CGI response parser on arbitrary guest output: a header block is
//! parsed or rejected with a reason, never a panic; a parsed one points at
//! a body inside the output and carries a valid status.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match wedge_cgi::parse_response(data) {
        Ok(r) => {
            assert!(r.body_start <= data.len());
            assert!((200..600).contains(&r.status.as_u16()));
            for name in r.headers.keys() {
                assert_ne!(name, http::header::TRANSFER_ENCODING);
                assert_ne!(name, http::header::CONTENT_LENGTH);
            }
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
});
