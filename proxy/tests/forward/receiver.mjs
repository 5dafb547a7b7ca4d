// A backend for proxy/tests/forward.rs: verifies every request with the README's Node verifier
// (examples/verify-forward.mjs), answers 500 to the first FAIL_FIRST tries of each
// Idempotency-Key, 401 to a bad signature, else 204; prints one JSON line per request.
import http from 'node:http';
import { verifyForward } from '../../../examples/verify-forward.mjs';

const secret = process.env.FORWARD_SECRET;
const failFirst = Number(process.env.FAIL_FIRST ?? 0);
const tries = new Map();

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    const key = String(req.headers['idempotency-key'] ?? '');
    const verified = verifyForward(secret, req.headers, raw);
    const n = (tries.get(key) ?? 0) + 1;
    tries.set(key, n);
    const status = !verified ? 401 : n <= failFirst ? 500 : 204;
    console.log(JSON.stringify({
      key, verified, status, try: n,
      timestamp: req.headers['x-qys-timestamp'] ?? null,
      signature: req.headers['x-qys-signature'] ?? null,
      body: raw.toString('base64'),
    }));
    res.writeHead(status).end(status === 500 ? 'not yet' : '');
  });
});
server.listen(0, '127.0.0.1', () => console.log(`receiver: http://127.0.0.1:${server.address().port}/hooks/qys`));
