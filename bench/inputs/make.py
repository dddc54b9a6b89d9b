"""Makes the bench inputs: an order document, a photo-like JPEG and two JWTs.

Deterministic (fixed seed), so the committed files can be rebuilt byte for byte
with `python3 bench/inputs/make.py` (needs Pillow, pinned in
bench/contenders/python/requirements.txt).
"""
import base64, hashlib, hmac, json, math, os, random

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(42)

# ~5 KB order with 48 items.
items = [
    {"sku": f"SKU-{i:04d}", "name": f"part number {i} ({rng.choice(['bolt', 'nut', 'gear', 'cable'])})",
     "unit_cents": rng.randint(50, 50000), "qty": rng.randint(1, 20)}
    for i in range(48)
]
order = {"order_id": "A-1001", "customer": {"name": "Ada Lovelace", "country": "SE"}, "items": items}
with open(os.path.join(HERE, "order.json"), "w") as f:
    json.dump(order, f, indent=1)

# 1024x768 photo-like JPEG: smooth gradients, circles and noise, ~100 KB at q85.
w, h = 1024, 768
img = Image.new("RGB", (w, h))
px = img.load()
blobs = [(rng.randint(0, w), rng.randint(0, h), rng.randint(40, 200), rng.randint(0, 255)) for _ in range(12)]
for y in range(h):
    for x in range(w):
        r = int(128 + 100 * math.sin(x / 97.0) * math.cos(y / 61.0))
        g = int(x * 255 / w)
        b = int(y * 255 / h)
        for (cx, cy, rad, tone) in blobs:
            if (x - cx) ** 2 + (y - cy) ** 2 < rad * rad:
                r, g, b = (r + tone) // 2, (g + 255 - tone) // 2, (b + tone // 2) // 2
        n = rng.randint(-5, 5)
        px[x, y] = (max(0, min(255, r + n)), max(0, min(255, g + n)), max(0, min(255, b + n)))
img.save(os.path.join(HERE, "photo.jpg"), "JPEG", quality=85, optimize=False, progressive=False)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(secret: bytes) -> str:
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps({"sub": "edge-user-42", "exp": 4102444800, "scope": "read"}, separators=(",", ":")).encode())
    sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


with open(os.path.join(HERE, "token.txt"), "w") as f:
    f.write(jwt(b"wedge-bench-secret") + "\n")
with open(os.path.join(HERE, "token-bad.txt"), "w") as f:
    f.write(jwt(b"not-the-secret") + "\n")
