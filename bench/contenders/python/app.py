"""Python contender for the wedge benchmarks (bench/WORKLOADS.md).

A plain ASGI application, no framework, served by uvicorn (uvloop, httptools):

    uvicorn app:app --port $PORT --workers 1 --log-level warning --no-access-log

Bad input gets 400/401/404/413, never a crash.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import io
import json
import re
import time
from urllib.parse import parse_qs

from PIL import Image

SECRET = b"wedge-bench-secret"
MAX_BODY = 16 << 20  # largest request body accepted (the photo is ~100 KB)
MAX_SLEEP_MS = 60_000  # longest sleep /slow accepts
THUMB_SIZE = (320, 240)
JPEG_QUALITY = 85
B64URL = re.compile(rb"[A-Za-z0-9_-]*")
DIGITS = re.compile(r"[0-9]{1,5}")

TEXT = [(b"content-type", b"text/plain")]
JSON = [(b"content-type", b"application/json")]
JPEG = [(b"content-type", b"image/jpeg")]


class BodyTooLarge(Exception):
    pass


async def send_response(send, status, headers, body):
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": headers + [(b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


async def read_body(receive):
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# ---- /json ----

def is_int(value):
    return type(value) is int  # not bool, not float


def order_summary(body):
    """The transformed order as JSON bytes, or None when the body is not a well-formed order."""
    try:
        order = json.loads(body)
        customer = order["customer"]
        items = order["items"]
        out = {
            "id": order["order_id"],
            "customer": customer["name"],
            "country": customer["country"],
        }
        if not all(isinstance(v, str) for v in out.values()) or not isinstance(items, list):
            return None
        lines = []
        total = 0
        for item in items:
            sku, name, unit, qty = item["sku"], item["name"], item["unit_cents"], item["qty"]
            if not (isinstance(sku, str) and isinstance(name, str) and is_int(unit) and is_int(qty)):
                return None
            amount = unit * qty
            total += amount
            lines.append({"product": sku, "title": name, "amount_cents": amount})
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        # ValueError covers json.JSONDecodeError and undecodable UTF-8;
        # RecursionError absurdly deep nesting.
        return None
    out["count"] = len(items)
    out["total_cents"] = total
    out["lines"] = lines
    return json.dumps(out, separators=(",", ":")).encode()


# ---- /jwt ----

def b64url_decode(part):
    if not B64URL.fullmatch(part):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


def b64url_json(part):
    value = json.loads(b64url_decode(part))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def verify_jwt(authorization):
    """The `sub` of a valid HS256 bearer token, or None for anything else."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    parts = token.strip().split(b".")
    if len(parts) != 3:
        return None
    head64, claims64, sig64 = parts
    try:
        if b64url_json(head64).get("alg") != "HS256":
            return None
        expected = hmac.new(SECRET, head64 + b"." + claims64, hashlib.sha256).digest()
        if not hmac.compare_digest(b64url_decode(sig64), expected):
            return None
        claims = b64url_json(claims64)
    except (ValueError, binascii.Error, RecursionError):
        return None
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp <= time.time():
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


# ---- /image ----

def thumbnail(body):
    """Grey 320x240 JPEG thumbnail of a JPEG; raises on an undecodable image."""
    with Image.open(io.BytesIO(body), formats=["JPEG"]) as img:
        # convert("L") is ITU-R 601-2 luma, L = R * 299/1000 + G * 587/1000 + B * 114/1000.
        # Pillow's BILINEAR filter is antialiased when shrinking (its support grows with
        # the scale), which is what a Python user would use.
        small = img.convert("L").resize(THUMB_SIZE, Image.BILINEAR)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


# ---- /slow ----

def sleep_ms(query_string):
    values = parse_qs(query_string.decode("latin-1")).get("ms")
    if not values or not DIGITS.fullmatch(values[0]):
        return None
    ms = int(values[0])
    return ms if ms <= MAX_SLEEP_MS else None


# ---- routing ----

async def app(scope, receive, send):
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return

    method = scope["method"]
    path = scope["path"]

    if method == "GET" and path == "/hello":
        await send_response(send, 200, TEXT, b"Hello, wedge\n")

    elif method == "POST" and path in ("/json", "/image"):
        try:
            body = await read_body(receive)
        except BodyTooLarge:
            await send_response(send, 413, TEXT, b"body too large\n")
            return
        except ConnectionError:
            return
        if path == "/json":
            out = order_summary(body)
            if out is None:
                await send_response(send, 400, TEXT, b"malformed order\n")
            else:
                await send_response(send, 200, JSON, out)
        else:
            try:
                # CPU-bound: run it in the default thread pool so the event loop keeps
                # serving (Pillow releases the GIL while it decodes, resizes and encodes).
                out = await asyncio.to_thread(thumbnail, body)
            except Exception:  # Pillow raises many kinds on bad input; none may crash the server
                await send_response(send, 400, TEXT, b"bad image\n")
            else:
                await send_response(send, 200, JPEG, out)

    elif method == "GET" and path == "/jwt":
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                break
        sub = verify_jwt(authorization)
        if sub is None:
            await send_response(send, 401, TEXT, b"invalid token\n")
        else:
            await send_response(send, 200, TEXT, f"ok {sub}\n".encode())

    elif method == "GET" and path == "/slow":
        ms = sleep_ms(scope["query_string"])
        if ms is None:
            await send_response(send, 400, TEXT, b"bad ms\n")
        else:
            await asyncio.sleep(ms / 1000)
            await send_response(send, 200, TEXT, b"slept\n")

    else:
        await send_response(send, 404, TEXT, b"not found\n")
