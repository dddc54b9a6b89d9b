//! Native Rust contender for the wedge benchmarks (bench/WORKLOADS.md): hyper 1
//! HTTP/1.1 with keep-alive on tokio's multi-thread runtime (one worker per core).
//!
//! Listens on 127.0.0.1:$PORT. Bad input gets 400/401/404/413, never a crash.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageFormat};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::net::TcpListener;

const SECRET: &[u8] = b"wedge-bench-secret";
/// Largest request body accepted (the photo is ~100 KB).
const MAX_BODY: usize = 16 << 20;
/// Longest sleep /slow accepts.
const MAX_SLEEP_MS: u64 = 60_000;
const THUMB_W: usize = 320;
const THUMB_H: usize = 240;
const JPEG_QUALITY: u8 = 85;

type Resp = Response<Full<Bytes>>;
type HmacSha256 = Hmac<Sha256>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|_| std::io::Error::other(format!("bad PORT {p:?}")))?,
        Err(_) => 8080,
    };
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning or exiting.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // Errors here are the client's doing (reset, malformed HTTP): nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(route))
                .await;
        });
    }
}

async fn route(req: Request<Incoming>) -> Result<Resp, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/hello") => text(StatusCode::OK, "Hello, wedge\n"),
        (&Method::POST, "/json") => match read_body(req).await {
            Ok(body) => order_summary(&body),
            Err(resp) => resp,
        },
        (&Method::GET, "/jwt") => match verify_jwt(req.headers().get(AUTHORIZATION)) {
            Some(sub) => text(StatusCode::OK, format!("ok {sub}\n")),
            None => text(StatusCode::UNAUTHORIZED, "invalid token\n"),
        },
        (&Method::POST, "/image") => match read_body(req).await {
            Ok(body) => thumbnail(body).await,
            Err(resp) => resp,
        },
        (&Method::GET, "/slow") => match sleep_ms(req.uri().query()) {
            Some(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(StatusCode::OK, "slept\n")
            }
            None => text(StatusCode::BAD_REQUEST, "bad ms\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    respond(status, "text/plain", body)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Resp> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n")),
        Err(_) => Err(text(StatusCode::BAD_REQUEST, "bad body\n")),
    }
}

// ---- /json ----

#[derive(Deserialize)]
struct Order<'a> {
    #[serde(borrow)]
    order_id: Cow<'a, str>,
    #[serde(borrow)]
    customer: Customer<'a>,
    #[serde(borrow)]
    items: Vec<Item<'a>>,
}

#[derive(Deserialize)]
struct Customer<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    country: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    sku: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    unit_cents: i64,
    qty: i64,
}

#[derive(Serialize)]
struct Summary<'a> {
    id: &'a str,
    customer: &'a str,
    country: &'a str,
    count: usize,
    total_cents: i64,
    lines: Vec<Line<'a>>,
}

#[derive(Serialize)]
struct Line<'a> {
    product: &'a str,
    title: &'a str,
    amount_cents: i64,
}

fn order_summary(body: &[u8]) -> Resp {
    let Ok(order) = serde_json::from_slice::<Order>(body) else {
        return text(StatusCode::BAD_REQUEST, "malformed order\n");
    };
    let mut total: i64 = 0;
    let mut lines = Vec::with_capacity(order.items.len());
    for item in &order.items {
        let Some(amount) = item.unit_cents.checked_mul(item.qty) else {
            return text(StatusCode::BAD_REQUEST, "amount out of range\n");
        };
        let Some(sum) = total.checked_add(amount) else {
            return text(StatusCode::BAD_REQUEST, "total out of range\n");
        };
        total = sum;
        lines.push(Line { product: &item.sku, title: &item.name, amount_cents: amount });
    }
    let summary = Summary {
        id: &order.order_id,
        customer: &order.customer.name,
        country: &order.customer.country,
        count: order.items.len(),
        total_cents: total,
        lines,
    };
    match serde_json::to_vec(&summary) {
        Ok(json) => respond(StatusCode::OK, "application/json", json),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
    }
}

// ---- /jwt ----

#[derive(Deserialize)]
struct JwtHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<serde_json::Value>,
}

/// The `sub` of a valid HS256 bearer token, or None for anything else.
fn verify_jwt(authorization: Option<&HeaderValue>) -> Option<String> {
    let (scheme, token) = authorization?.to_str().ok()?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut parts = token.trim().split('.');
    let (head64, claims64, sig64) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }

    let head = URL_SAFE_NO_PAD.decode(head64).ok()?;
    let head: JwtHeader = serde_json::from_slice(&head).ok()?;
    if head.alg != "HS256" {
        return None;
    }

    let sig = URL_SAFE_NO_PAD.decode(sig64).ok()?;
    let mut mac = HmacSha256::new_from_slice(SECRET).expect("HMAC takes keys of any length");
    mac.update(head64.as_bytes());
    mac.update(b".");
    mac.update(claims64.as_bytes());
    mac.verify_slice(&sig).ok()?; // constant-time comparison

    let claims = URL_SAFE_NO_PAD.decode(claims64).ok()?;
    let claims: Claims = serde_json::from_slice(&claims).ok()?;
    if let Some(exp) = claims.exp.as_ref().and_then(serde_json::Value::as_f64) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
        if exp <= now {
            return None;
        }
    }
    claims.sub
}

// ---- /image ----

async fn thumbnail(jpeg: Bytes) -> Resp {
    // Decoding and encoding are CPU-bound: keep them off the async worker threads.
    match tokio::task::spawn_blocking(move || grey_thumbnail(&jpeg)).await {
        Ok(Ok(out)) => respond(StatusCode::OK, "image/jpeg", out),
        Ok(Err(_)) => text(StatusCode::BAD_REQUEST, "bad image\n"),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "image task failed\n"),
    }
}

fn grey_thumbnail(jpeg: &[u8]) -> image::ImageResult<Vec<u8>> {
    let rgb = image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg)?.into_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let grey: Vec<u8> = rgb
        .as_raw()
        .chunks_exact(3)
        .map(|p| ((299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32 + 500) / 1000) as u8)
        .collect();
    let small = resize_bilinear(&grey, w, h, THUMB_W, THUMB_H);
    let mut out = Vec::with_capacity(64 << 10);
    JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).encode(
        &small,
        THUMB_W as u32,
        THUMB_H as u32,
        ExtendedColorType::L8,
    )?;
    Ok(out)
}

/// Bilinear resize of an 8-bit single-channel image, pixel centres aligned:
/// `src = (dst + 0.5) * scale - 0.5`, clamped to the edges.
fn resize_bilinear(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
    let mut out = vec![0u8; dw * dh];
    if sw == 0 || sh == 0 {
        return out;
    }
    let cols: Vec<(usize, usize, f32)> =
        (0..dw).map(|x| sample_at(x, sw as f32 / dw as f32, sw)).collect();
    for (y, row) in out.chunks_exact_mut(dw).enumerate() {
        let (y0, y1, fy) = sample_at(y, sh as f32 / dh as f32, sh);
        let (r0, r1) = (&src[y0 * sw..][..sw], &src[y1 * sw..][..sw]);
        for (o, &(x0, x1, fx)) in row.iter_mut().zip(&cols) {
            let top = f32::from(r0[x0]) + (f32::from(r0[x1]) - f32::from(r0[x0])) * fx;
            let bottom = f32::from(r1[x0]) + (f32::from(r1[x1]) - f32::from(r1[x0])) * fx;
            *o = (top + (bottom - top) * fy + 0.5) as u8; // `as` saturates to 0..=255
        }
    }
    out
}

/// The two source indices around output index `d` and the weight of the second.
fn sample_at(d: usize, scale: f32, n: usize) -> (usize, usize, f32) {
    let s = ((d as f32 + 0.5) * scale - 0.5).clamp(0.0, (n - 1) as f32);
    let i0 = s as usize;
    (i0, (i0 + 1).min(n - 1), s - i0 as f32)
}

// ---- /slow ----

fn sleep_ms(query: Option<&str>) -> Option<u64> {
    let ms = query?.split('&').find_map(|kv| kv.strip_prefix("ms="))?;
    ms.parse().ok().filter(|&ms| ms <= MAX_SLEEP_MS)
}
