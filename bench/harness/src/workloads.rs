//! The four workloads of bench/WORKLOADS.md: their requests and answer checks.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use serde_json::{Value, json};

use crate::http::{Request, Response};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Hello,
    Json,
    Jwt,
    Image,
}

pub const ALL: [Workload; 4] = [
    Workload::Hello,
    Workload::Json,
    Workload::Jwt,
    Workload::Image,
];

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Hello => "hello",
            Workload::Json => "json",
            Workload::Jwt => "jwt",
            Workload::Image => "image",
        }
    }

    /// Connections for the throughput run. An image costs tens of milliseconds
    /// of CPU, so 64 at once would take seconds each on two cores and a run of a
    /// few seconds would see a handful of answers from servers that share the
    /// CPU fairly between requests; 16 keep every server busy with a steady flow.
    pub fn connections(self, usual: usize) -> usize {
        match self {
            Workload::Image => usual.min(16),
            _ => usual,
        }
    }

    pub fn parse(s: &str) -> Result<Workload> {
        ALL.into_iter()
            .find(|w| w.name() == s)
            .with_context(|| format!("unknown workload {s:?}; known: hello, json, jwt, image"))
    }
}

/// The inputs, read once from bench/inputs.
pub struct Inputs {
    order: Vec<u8>,
    expected_order: Value,
    token: String,
    bad_token: String,
    photo: Vec<u8>,
}

impl Inputs {
    pub fn load(dir: &Path) -> Result<Inputs> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .with_context(|| format!("reading {}/{name}", dir.display()))
        };
        let order = read("order.json")?;
        let expected_order = transform(&serde_json::from_slice(&order)?)?;
        let text = |name: &str| -> Result<String> {
            Ok(String::from_utf8(read(name)?)?.trim().to_string())
        };
        Ok(Inputs {
            order,
            expected_order,
            token: text("token.txt")?,
            bad_token: text("token-bad.txt")?,
            photo: read("photo.jpg")?,
        })
    }

    /// The request the load generator repeats.
    pub fn request(&self, w: Workload) -> Request {
        match w {
            Workload::Hello => Request::new("GET", "/hello", &[], b""),
            Workload::Json => Request::new(
                "POST",
                "/json",
                &[("content-type", "application/json")],
                &self.order,
            ),
            Workload::Jwt => {
                let auth = format!("Bearer {}", self.token);
                Request::new("GET", "/jwt", &[("authorization", &auth)], b"")
            }
            Workload::Image => Request::new(
                "POST",
                "/image",
                &[("content-type", "image/jpeg")],
                &self.photo,
            ),
        }
    }

    /// Requests that must be refused, with the status they must get.
    pub fn refusals(&self, w: Workload) -> Vec<(Request, u16)> {
        match w {
            Workload::Jwt => {
                let auth = format!("Bearer {}", self.bad_token);
                vec![
                    (
                        Request::new("GET", "/jwt", &[("authorization", &auth)], b""),
                        401,
                    ),
                    (Request::new("GET", "/jwt", &[], b""), 401),
                ]
            }
            Workload::Json => vec![(Request::new("POST", "/json", &[], b"{\"items\": [}"), 400)],
            _ => vec![],
        }
    }

    /// Checks a contender's answer to `request(w)` against the contract.
    pub fn check(&self, w: Workload, resp: &Response) -> Result<()> {
        ensure!(
            resp.status == 200,
            "status {} (body {:?})",
            resp.status,
            preview(&resp.body)
        );
        match w {
            Workload::Hello => ensure!(
                resp.body == b"Hello, wedge\n",
                "body {:?}",
                preview(&resp.body)
            ),
            Workload::Json => {
                let kind = resp.header("content-type").unwrap_or("");
                ensure!(
                    kind.starts_with("application/json"),
                    "content-type {kind:?}"
                );
                let got: Value =
                    serde_json::from_slice(&resp.body).context("answer is not JSON")?;
                ensure!(
                    got == self.expected_order,
                    "transformed order differs: {}",
                    preview(&resp.body)
                );
            }
            Workload::Jwt => ensure!(
                resp.body == b"ok edge-user-42\n",
                "body {:?}",
                preview(&resp.body)
            ),
            Workload::Image => {
                let kind = resp.header("content-type").unwrap_or("");
                ensure!(kind.starts_with("image/jpeg"), "content-type {kind:?}");
                let (w, h, components) = jpeg_frame(&resp.body)?;
                // One grey component; three where the encoder has no grey mode (jpeg-js).
                ensure!(
                    (w, h) == (320, 240) && (components == 1 || components == 3),
                    "JPEG is {w}x{h} with {components} components"
                );
            }
        }
        Ok(())
    }
}

fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// The contract's transformation, computed here to check the contenders.
fn transform(order: &Value) -> Result<Value> {
    let items = order["items"].as_array().context("order has no items")?;
    let mut lines = Vec::new();
    let mut total = 0i64;
    for item in items {
        let amount = item["unit_cents"].as_i64().context("unit_cents")?
            * item["qty"].as_i64().context("qty")?;
        total += amount;
        lines.push(json!({"product": item["sku"], "title": item["name"], "amount_cents": amount}));
    }
    Ok(json!({
        "id": order["order_id"],
        "customer": order["customer"]["name"],
        "country": order["customer"]["country"],
        "count": items.len(),
        "total_cents": total,
        "lines": lines,
    }))
}

/// Width, height and component count from a JPEG's start-of-frame marker.
pub fn jpeg_frame(data: &[u8]) -> Result<(u16, u16, u8)> {
    ensure!(
        data.starts_with(&[0xFF, 0xD8]),
        "not a JPEG (no SOI marker)"
    );
    let mut i = 2;
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            bail!("JPEG marker expected at offset {i}");
        }
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
        // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let f = data
                .get(i + 4..i + 10)
                .context("JPEG frame header cut short")?;
            let h = u16::from_be_bytes([f[1], f[2]]);
            let w = u16::from_be_bytes([f[3], f[4]]);
            return Ok((w, h, f[5]));
        }
        i += 2 + len;
    }
    bail!("JPEG has no frame header")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../inputs")).unwrap()
    }

    fn reply(status: u16, body: &[u8]) -> Response {
        let kind = if body.starts_with(b"{") {
            "application/json"
        } else {
            "image/jpeg"
        };
        Response {
            status,
            headers: vec![("content-type".into(), kind.into())],
            body: body.to_vec(),
            close: false,
        }
    }

    #[test]
    fn the_order_transformation_follows_the_contract() {
        let order = json!({"order_id": "A", "customer": {"name": "Ada", "country": "SE"},
            "items": [{"sku": "X1", "name": "bolt", "unit_cents": 120, "qty": 3},
                      {"sku": "X2", "name": "nut", "unit_cents": 5, "qty": 10}]});
        let out = transform(&order).unwrap();
        assert_eq!(
            out,
            json!({"id": "A", "customer": "Ada", "country": "SE", "count": 2, "total_cents": 410,
            "lines": [{"product": "X1", "title": "bolt", "amount_cents": 360},
                      {"product": "X2", "title": "nut", "amount_cents": 50}]})
        );
    }

    #[test]
    fn answers_are_checked() {
        let i = inputs();
        assert!(
            i.check(Workload::Hello, &reply(200, b"Hello, wedge\n"))
                .is_ok()
        );
        assert!(
            i.check(Workload::Hello, &reply(200, b"Hello, wedge"))
                .is_err()
        );
        assert!(
            i.check(Workload::Hello, &reply(500, b"Hello, wedge\n"))
                .is_err()
        );
        let good = serde_json::to_vec(&i.expected_order).unwrap();
        assert!(i.check(Workload::Json, &reply(200, &good)).is_ok());
        let mut wrong = i.expected_order.clone();
        wrong["total_cents"] = json!(1);
        assert!(
            i.check(
                Workload::Json,
                &reply(200, &serde_json::to_vec(&wrong).unwrap())
            )
            .is_err()
        );
        assert!(
            i.check(Workload::Jwt, &reply(200, b"ok edge-user-42\n"))
                .is_ok()
        );
        assert!(
            i.check(Workload::Jwt, &reply(200, b"ok someone\n"))
                .is_err()
        );
        // The committed photo is a colour JPEG of 1024x768, not 320x240.
        assert!(i.check(Workload::Image, &reply(200, &i.photo)).is_err());
        assert_eq!(jpeg_frame(&i.photo).unwrap(), (1024, 768, 3));
    }

    #[test]
    fn broken_jpegs_are_errors_not_panics() {
        assert!(jpeg_frame(b"").is_err());
        assert!(jpeg_frame(&[0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08]).is_err());
        assert!(jpeg_frame(&[0xFF, 0xD8, 0x00]).is_err());
        assert_eq!(
            jpeg_frame(&[
                0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0xF0, 0x01, 0x40, 0x01
            ])
            .unwrap(),
            (320, 240, 1)
        );
    }

    #[test]
    fn workload_names_round_trip() {
        for w in ALL {
            assert_eq!(Workload::parse(w.name()).unwrap(), w);
        }
        assert!(Workload::parse("video").is_err());
    }
}
