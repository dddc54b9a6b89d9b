'use strict';
// Node.js contender for the wedge benchmarks (bench/WORKLOADS.md): node:http,
// one process, HTTP/1.1 keep-alive. Listens on 127.0.0.1:$PORT.
// Bad input gets 400/401/404/413, never a crash.

const http = require('node:http');
const crypto = require('node:crypto');
const jpeg = require('jpeg-js');

const PORT = Number.parseInt(process.env.PORT || '8080', 10);
const SECRET = Buffer.from('wedge-bench-secret');
const MAX_BODY = 16 << 20; // largest request body accepted (the photo is ~100 KB)
const MAX_SLEEP_MS = 60000; // longest sleep /slow accepts
const THUMB_W = 320;
const THUMB_H = 240;
const JPEG_QUALITY = 85;

const HELLO = Buffer.from('Hello, wedge\n');
const INVALID_TOKEN = Buffer.from('invalid token\n');
const SLEPT = Buffer.from('slept\n');
const B64URL = /^[A-Za-z0-9_-]*$/;


function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function text(res, status, body) {
  send(res, status, 'text/plain', body);
}

/** Calls onBody(buffer) with the whole request body, or answers 413 when it is too large. */
function readBody(req, res, onBody) {
  const chunks = [];
  let size = 0;
  let refused = false;
  req.on('data', (chunk) => {
    if (refused) return;
    size += chunk.length;
    if (size > MAX_BODY) {
      refused = true;
      chunks.length = 0;
      res.setHeader('connection', 'close');
      text(res, 413, 'body too large\n');
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (!refused) onBody(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
  });
}

// ---- /json ----

const isInt = Number.isSafeInteger;

/** The transformed order, or null when the body is not a well-formed order. */
function orderSummary(body) {
  let order;
  try {
    order = JSON.parse(body.toString('utf8'));
  } catch {
    return null;
  }
  if (order === null || typeof order !== 'object' || typeof order.order_id !== 'string') return null;
  const { customer, items } = order;
  if (customer === null || typeof customer !== 'object') return null;
  if (typeof customer.name !== 'string' || typeof customer.country !== 'string') return null;
  if (!Array.isArray(items)) return null;
  const lines = new Array(items.length);
  let total = 0;
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (item === null || typeof item !== 'object') return null;
    const { sku, name, unit_cents: unit, qty } = item;
    if (typeof sku !== 'string' || typeof name !== 'string' || !isInt(unit) || !isInt(qty)) return null;
    const amount = unit * qty;
    total += amount;
    if (!isInt(amount) || !isInt(total)) return null;
    lines[i] = { product: sku, title: name, amount_cents: amount };
  }
  return JSON.stringify({
    id: order.order_id,
    customer: customer.name,
    country: customer.country,
    count: items.length,
    total_cents: total,
    lines,
  });
}

// ---- /jwt ----

function b64urlJson(part) {
  if (!B64URL.test(part)) return null;
  try {
    const value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' ? value : null;
  } catch {
    return null;
  }
}

/** The `sub` of a valid HS256 bearer token, or null for anything else. */
function verifyJwt(authorization) {
  if (typeof authorization !== 'string') return null;
  const space = authorization.indexOf(' ');
  if (space < 0 || authorization.slice(0, space).toLowerCase() !== 'bearer') return null;
  const parts = authorization.slice(space + 1).trim().split('.');
  if (parts.length !== 3) return null;
  const [head64, claims64, sig64] = parts;

  const head = b64urlJson(head64);
  if (head === null || head.alg !== 'HS256') return null;

  if (!B64URL.test(sig64)) return null;
  const sig = Buffer.from(sig64, 'base64url');
  const expected = crypto.createHmac('sha256', SECRET).update(`${head64}.${claims64}`).digest();
  if (sig.length !== expected.length || !crypto.timingSafeEqual(sig, expected)) return null;

  const claims = b64urlJson(claims64);
  if (claims === null) return null;
  if (typeof claims.exp === 'number' && claims.exp <= Date.now() / 1000) return null;
  return typeof claims.sub === 'string' ? claims.sub : null;
}

// ---- /image ----

/** Grey 320x240 JPEG thumbnail of a JPEG; throws on an undecodable image. */
function thumbnail(body) {
  const img = jpeg.decode(body, { formatAsRGBA: false, useTArray: true });
  const { width: w, height: h, data: rgb } = img;
  if (w === 0 || h === 0) throw new Error('empty image');
  const grey = new Uint8Array(w * h);
  for (let i = 0, j = 0; i < grey.length; i++, j += 3) {
    grey[i] = ((299 * rgb[j] + 587 * rgb[j + 1] + 114 * rgb[j + 2] + 500) / 1000) | 0;
  }
  const small = resizeBilinear(grey, w, h, THUMB_W, THUMB_H);
  // jpeg-js only encodes RGBA, so the grey image goes out as three equal
  // components (bench/WORKLOADS.md allows this for encoders without a grey mode).
  const rgba = new Uint8Array(THUMB_W * THUMB_H * 4);
  for (let i = 0, j = 0; i < small.length; i++, j += 4) {
    rgba[j] = rgba[j + 1] = rgba[j + 2] = small[i];
    rgba[j + 3] = 255;
  }
  return jpeg.encode({ data: rgba, width: THUMB_W, height: THUMB_H }, JPEG_QUALITY).data;
}

/**
 * Bilinear resize of an 8-bit single-channel image, pixel centres aligned:
 * src = (dst + 0.5) * scale - 0.5, clamped to the edges.
 */
function resizeBilinear(src, sw, sh, dw, dh) {
  const out = new Uint8Array(dw * dh);
  const x0s = new Int32Array(dw);
  const x1s = new Int32Array(dw);
  const fxs = new Float64Array(dw);
  const sx = sw / dw;
  for (let x = 0; x < dw; x++) {
    const s = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), sw - 1);
    const i0 = Math.floor(s);
    x0s[x] = i0;
    x1s[x] = Math.min(i0 + 1, sw - 1);
    fxs[x] = s - i0;
  }
  const sy = sh / dh;
  for (let y = 0; y < dh; y++) {
    const s = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), sh - 1);
    const y0 = Math.floor(s);
    const fy = s - y0;
    const r0 = y0 * sw;
    const r1 = Math.min(y0 + 1, sh - 1) * sw;
    const o = y * dw;
    for (let x = 0; x < dw; x++) {
      const a = x0s[x];
      const b = x1s[x];
      const fx = fxs[x];
      const top = src[r0 + a] + (src[r0 + b] - src[r0 + a]) * fx;
      const bottom = src[r1 + a] + (src[r1 + b] - src[r1 + a]) * fx;
      out[o + x] = top + (bottom - top) * fy + 0.5; // Uint8Array stores truncate: rounds
    }
  }
  return out;
}

// ---- /slow ----

function sleepMs(query) {
  const ms = new URLSearchParams(query).get('ms');
  if (ms === null || !/^\d{1,5}$/.test(ms)) return null;
  const n = Number(ms);
  return n <= MAX_SLEEP_MS ? n : null;
}

// ---- routing ----

function handle(req, res) {
  req.on('error', () => {}); // aborted by the client: nothing to answer
  const url = req.url;
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const method = req.method;

  if (method === 'GET' && path === '/hello') {
    text(res, 200, HELLO);
  } else if (method === 'POST' && path === '/json') {
    readBody(req, res, (body) => {
      const json = orderSummary(body);
      if (json === null) text(res, 400, 'malformed order\n');
      else send(res, 200, 'application/json', json);
    });
  } else if (method === 'GET' && path === '/jwt') {
    const sub = verifyJwt(req.headers.authorization);
    if (sub === null) text(res, 401, INVALID_TOKEN);
    else text(res, 200, `ok ${sub}\n`);
  } else if (method === 'POST' && path === '/image') {
    readBody(req, res, (body) => {
      let out;
      try {
        out = thumbnail(body);
      } catch {
        text(res, 400, 'bad image\n');
        return;
      }
      send(res, 200, 'image/jpeg', out);
    });
  } else if (method === 'GET' && path === '/slow') {
    const ms = sleepMs(q < 0 ? '' : url.slice(q + 1));
    if (ms === null) text(res, 400, 'bad ms\n');
    else setTimeout(() => text(res, 200, SLEPT), ms);
  } else {
    text(res, 404, 'not found\n');
  }
}

const server = http.createServer(handle);
server.listen(PORT, '127.0.0.1');
