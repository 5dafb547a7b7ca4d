# The Python verifier of callbacks forwarded by qys-proxy (README "What your backend receives").
# tests: proxy/tests/forward.rs feeds it real deliveries on stdin (the __main__ block below).

# snippet:start
import hashlib, hmac, time

def verify_forward(secret: str, timestamp: str, signature: str, raw_body: bytes, tolerance_ms=300_000) -> bool:
    """timestamp, signature: the X-Qys-Timestamp and X-Qys-Signature headers; raw_body: exact bytes."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 15):
        return False
    if abs(time.time() * 1000 - int(timestamp)) > tolerance_ms:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + mac, signature)
# snippet:end

if __name__ == "__main__":
    # One JSON object a line: {"timestamp", "signature", "body" (base64)}; prints ok or bad each.
    import base64, json, os, sys
    for line in sys.stdin:
        d = json.loads(line)
        good = verify_forward(os.environ["FORWARD_SECRET"], d["timestamp"], d["signature"], base64.b64decode(d["body"]))
        print("ok" if good else "bad", flush=True)
