//! wedge ABI v1, the host side (docs/go-sdk.md): the functions an SDK
//! module imports from `wedge_v1`, over the state of the one invocation its
//! instance serves. Pointers are offsets into the guest's memory; one out of
//! bounds traps the guest.

use super::SdkHost;
use super::response::{CHUNK, Responder};
use crate::body::Body;
use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use wasmtime::{Caller, Extern, Linker, Memory};

/// The module the host functions are imported from.
pub const MODULE: &str = "wedge_v1";
/// The export called once per invocation.
pub const HANDLE: &str = "wedge_handle_v1";
/// The export called once while the snapshot is taken, if present.
pub const WARMUP: &str = "wedge_warmup_v1";

/// The largest response head record accepted.
const MAX_RESPONSE_HEAD: u32 = 1 << 20;
/// The most response headers accepted.
const MAX_HEADERS: usize = 1024;
/// How much of a failure's reason is kept.
const MAX_REASON: u32 = 4 << 10;

/// One invocation, as the host functions see it.
pub struct CallState {
    /// The request head, encoded once.
    head: Vec<u8>,
    body: Option<Body>,
    /// Body bytes received but not yet read by the guest.
    pending: Bytes,
    pub out: Responder,
    /// Why the guest says it failed (`fail`).
    pub failed: Option<String>,
}

impl CallState {
    pub fn new(head: Vec<u8>, body: Body, out: Responder) -> Self {
        CallState {
            head,
            body: Some(body),
            pending: Bytes::new(),
            out,
            failed: None,
        }
    }

    /// The response side and the guest's reason for failing, once the
    /// guest is done.
    pub fn into_parts(self) -> Parts {
        Parts {
            out: self.out,
            failed: self.failed,
        }
    }

    /// Waits for more body bytes: `Ok(false)` at the end.
    async fn fill(&mut self) -> Result<bool, ()> {
        loop {
            let Some(body) = self.body.as_mut() else {
                return Ok(false);
            };
            match body.frame().await {
                None => {
                    self.body = None;
                    return Ok(false);
                }
                Some(Err(_)) => {
                    self.body = None;
                    return Err(());
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        self.pending = data;
                        return Ok(true);
                    }
                }
            }
        }
    }
}

/// What is left of an invocation once its guest is done.
pub struct Parts {
    pub out: Responder,
    pub failed: Option<String>,
}

/// Writes a record: a count, then each string's length and bytes, all
/// 32-bit little-endian; one buffer, the count filled in at the end.
struct Writer {
    buf: Vec<u8>,
    count: u32,
}

impl Writer {
    fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(&[0; 4]);
        Writer { buf, count: 0 }
    }

    /// Adds one string, the concatenation of `parts`.
    fn field(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.count += 1;
    }

    fn pair(&mut self, name: &[u8], value: &[u8]) {
        self.field(&[name]);
        self.field(&[value]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf[..4].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}

/// Encodes a record of `fields`.
#[cfg(test)]
pub fn record<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut w = Writer::new(64);
    for f in fields {
        w.field(&[f]);
    }
    w.finish()
}

/// Decodes a record, refusing one that is malformed or has more than
/// `max` strings.
pub fn decode(mut b: &[u8], max: usize) -> Result<Vec<&[u8]>, String> {
    let bad = || "the response head is not a well-formed record".to_string();
    let word = |b: &mut &[u8]| -> Result<usize, String> {
        let (w, rest) = b.split_first_chunk::<4>().ok_or_else(bad)?;
        *b = rest;
        Ok(u32::from_le_bytes(*w) as usize)
    };
    let count = word(&mut b)?;
    if count > max {
        return Err(format!("the response head has {count} fields, over {max}"));
    }
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let n = word(&mut b)?;
        if n > b.len() {
            return Err(bad());
        }
        let (f, rest) = b.split_at(n);
        fields.push(f);
        b = rest;
    }
    if !b.is_empty() {
        return Err(bad());
    }
    Ok(fields)
}

/// Where an invocation arrived: its addresses and the route that matched.
pub struct Arrival<'a> {
    pub remote: std::net::SocketAddr,
    pub local: std::net::SocketAddr,
    /// Arrived over TLS (`:scheme` is then `https`).
    pub tls: bool,
    /// The route as written in the manifest.
    pub template: &'a str,
    pub params: &'a [(String, &'a str)],
}

/// The request head record an invocation's guest reads.
pub fn request_head(
    id: &str,
    parts: &http::request::Parts,
    route: &Arrival<'_>,
    content_length: Option<usize>,
) -> Vec<u8> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let proto = match parts.version {
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let remote = route.remote.to_string();
    let local = route.local.to_string();
    let size = 256
        + path.len()
        + parts
            .headers
            .iter()
            .map(|(k, v)| 8 + k.as_str().len() + v.len())
            .sum::<usize>();
    let mut w = Writer::new(size);
    w.pair(b":method", parts.method.as_str().as_bytes());
    w.pair(b":path", path.as_bytes());
    w.pair(b":proto", proto.as_bytes());
    w.pair(b":id", id.as_bytes());
    w.pair(b":remote", remote.as_bytes());
    w.pair(b":local", local.as_bytes());
    w.pair(b":route", route.template.as_bytes());
    if route.tls {
        w.pair(b":scheme", b"https");
    }
    if let Some(n) = content_length {
        w.pair(b":content-length", n.to_string().as_bytes());
    }
    for (k, v) in route.params {
        w.field(&[b":param:", k.as_bytes()]);
        w.field(&[v.as_bytes()]);
    }
    let authority = parts.uri.authority().map(|a| a.as_str());
    if let (false, Some(a)) = (parts.headers.contains_key(http::header::HOST), authority) {
        w.pair(b"host", a.as_bytes());
    }
    for (name, value) in &parts.headers {
        w.pair(name.as_str().as_bytes(), value.as_bytes());
    }
    w.finish()
}

/// Parses a response head record: `:status`, then header pairs.
fn response_head(bytes: &[u8]) -> Result<(StatusCode, HeaderMap), String> {
    let fields = decode(bytes, 2 * (MAX_HEADERS + 1))?;
    if fields.len() % 2 != 0 {
        return Err("the response head has an odd number of fields".into());
    }
    let mut status = None;
    let mut headers = HeaderMap::new();
    for pair in fields.chunks(2) {
        let (k, v) = (pair[0], pair[1]);
        if k == b":status" {
            let code = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|c| (200..=999).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| format!("invalid status {:?}", String::from_utf8_lossy(v)))?;
            status = Some(code);
        } else if k.starts_with(b":") {
            return Err(format!("unknown field {:?}", String::from_utf8_lossy(k)));
        } else {
            let name = HeaderName::from_bytes(k)
                .map_err(|_| format!("invalid header name {:?}", String::from_utf8_lossy(k)))?;
            let value = HeaderValue::from_bytes(v)
                .map_err(|_| format!("invalid value for header {name}"))?;
            headers.append(name, value);
        }
    }
    let status = status.ok_or("the response head has no :status")?;
    Ok((status, headers))
}

fn memory(caller: &mut Caller<'_, SdkHost>) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => wasmtime::bail!("the module exports no memory"),
    }
}

fn range(len: usize, ptr: u32, n: u32) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = ptr as usize;
    let end = start.checked_add(n as usize).filter(|&e| e <= len);
    match end {
        Some(end) => Ok(start..end),
        None => wasmtime::bail!("wedge_v1: {n} bytes at {ptr:#x} are outside the guest's memory"),
    }
}

/// Copies `n` guest bytes at `ptr`.
fn copy_in(caller: &mut Caller<'_, SdkHost>, ptr: u32, n: u32) -> wasmtime::Result<Bytes> {
    let mem = memory(caller)?;
    let data = mem.data(&*caller);
    Ok(Bytes::copy_from_slice(&data[range(data.len(), ptr, n)?]))
}

fn call(host: &mut SdkHost) -> wasmtime::Result<&mut CallState> {
    host.call.as_mut().ok_or_else(|| {
        wasmtime::format_err!(
            "wedge_v1 functions serve invocations: none can be called while the module \
             initialises (from an init function or the warm-up)"
        )
    })
}

/// Defines the `wedge_v1` functions.
pub fn add_to_linker(linker: &mut Linker<SdkHost>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "request_head",
        |mut caller: Caller<'_, SdkHost>, ptr: u32, cap: u32| -> wasmtime::Result<u32> {
            let mem = memory(&mut caller)?;
            let (data, host) = mem.data_and_store_mut(&mut caller);
            let head = &call(host)?.head;
            if head.len() <= cap as usize {
                let r = range(data.len(), ptr, head.len() as u32)?;
                data[r].copy_from_slice(head);
            }
            Ok(head.len() as u32)
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "body_read",
        |mut caller: Caller<'_, SdkHost>, (ptr, cap): (u32, u32)| {
            Box::new(async move {
                let state = call(caller.data_mut())?;
                if state.pending.is_empty() {
                    match state.fill().await {
                        Ok(true) => {}
                        Ok(false) => return Ok(0),
                        Err(()) => return Ok(-1),
                    }
                }
                let mem = memory(&mut caller)?;
                let (data, host) = mem.data_and_store_mut(&mut caller);
                let state = call(host)?;
                let n = state.pending.len().min(cap as usize).min(i32::MAX as usize);
                let r = range(data.len(), ptr, n as u32)?;
                data[r].copy_from_slice(&state.pending[..n]);
                state.pending.advance(n);
                Ok(n as i32)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "response_head",
        |mut caller: Caller<'_, SdkHost>, ptr: u32, len: u32| -> wasmtime::Result<i32> {
            let head = if len > MAX_RESPONSE_HEAD {
                Err(format!(
                    "the response head is {len} bytes, over {MAX_RESPONSE_HEAD}"
                ))
            } else {
                response_head(&copy_in(&mut caller, ptr, len)?)
            };
            Ok(call(caller.data_mut())?.out.head(head))
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "body_write",
        |mut caller: Caller<'_, SdkHost>, (ptr, len): (u32, u32)| {
            Box::new(async move {
                // Copied a chunk at a time, so a huge write costs no more
                // host memory than a small one.
                let mut done = 0u32;
                while done < len {
                    let n = (len - done).min(CHUNK as u32);
                    let chunk = copy_in(&mut caller, ptr.wrapping_add(done), n)?;
                    if call(caller.data_mut())?.out.write(chunk).await < 0 {
                        return Ok(-1);
                    }
                    done += n;
                }
                Ok(0i32)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "flush",
        |mut caller: Caller<'_, SdkHost>, (): ()| {
            Box::new(async move { Ok(call(caller.data_mut())?.out.flush().await) })
        },
    )?;
    // The function's memory limit: constant, so callable while initialising.
    linker.func_wrap(
        MODULE,
        "memory_limit",
        |caller: Caller<'_, SdkHost>| -> i64 {
            i64::try_from(caller.data().max_memory).unwrap_or(i64::MAX)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fail",
        |mut caller: Caller<'_, SdkHost>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let reason = copy_in(&mut caller, ptr, len.min(MAX_REASON))?;
            call(caller.data_mut())?.failed = Some(String::from_utf8_lossy(&reason).into_owned());
            Ok(())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_malformed_ones_are_refused() {
        let r = record([b":status".as_slice(), b"201", b"x-a", b""]);
        assert_eq!(
            decode(&r, 8).unwrap(),
            [b":status".as_slice(), b"201", b"x-a", b""]
        );
        assert!(decode(&r[..r.len() - 1], 8).is_err());
        assert!(decode(&[r.as_slice(), b"x"].concat(), 8).is_err());
        assert!(decode(&r, 3).unwrap_err().contains("over 3"));
        // A length pointing past the end.
        let mut lying = r.clone();
        lying[4] = 200;
        assert!(decode(&lying, 8).is_err());
        assert!(decode(&[], 8).is_err());
    }

    #[test]
    fn response_heads_are_checked() {
        let ok = record([
            b":status".as_slice(),
            b"201",
            b"content-type",
            b"text/plain",
        ]);
        let (status, headers) = response_head(&ok).unwrap();
        assert_eq!(status, 201);
        assert_eq!(headers["content-type"], "text/plain");
        let no_status = record([b"a".as_slice(), b"b"]);
        assert!(response_head(&no_status).unwrap_err().contains(":status"));
        for bad in [b"99".as_slice(), b"1000", b"abc"] {
            let r = record([b":status".as_slice(), bad]);
            assert!(response_head(&r).unwrap_err().contains("invalid status"));
        }
        let bad_name = record([b":status".as_slice(), b"200", b"bad name", b"v"]);
        assert!(
            response_head(&bad_name)
                .unwrap_err()
                .contains("header name")
        );
        let bad_value = record([b":status".as_slice(), b"200", b"x", b"a\nb"]);
        assert!(response_head(&bad_value).unwrap_err().contains("header x"));
    }
}
