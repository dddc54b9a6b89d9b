"""Encodes one CloudEvent in structured and in binary HTTP mode with the
CloudEvents Python SDK (an implementation independent of wedge's) and prints
both requests as JSON: {"structured": {"headers": {...}, "body": "base64"}, ...}."""
import base64
import json

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

event = CloudEvent(
    {
        "type": "dev.example.reading",
        "source": "/sensors/7",
        "id": "abc-1",
        "subject": "sensors/7/reading",
        "partitionkey": "7",
    },
    {"t": 21.5},
)
out = {}
for mode, encode in (("structured", to_structured), ("binary", to_binary)):
    headers, body = encode(event)
    out[mode] = {"headers": dict(headers), "body": base64.b64encode(body).decode()}
print(json.dumps(out))
