// A misbehaving "proxy" for the browser error tests: every route answers CORS for any origin
// so the SDK can read what went wrong. Usage: node faults.mjs <port>
import { createServer } from 'node:http';

let received = 0;
const port = Number(process.argv[2] ?? 0);
const server = createServer((req, res) => {
  const cors = { 'access-control-allow-origin': req.headers.origin ?? '*' };
  const path = new URL(req.url, 'http://x').pathname;
  if (path === '/count') {
    res.writeHead(200, { ...cors, 'content-type': 'application/json' });
    return res.end(JSON.stringify({ received }));
  }
  received += 1;
  if (path === '/hang') return; // never answers
  if (path === '/status500') {
    res.writeHead(500, { ...cors, 'content-type': 'text/plain' });
    return res.end('internal error');
  }
  if (path === '/garbage') {
    res.writeHead(200, { ...cors, 'content-type': 'text/html' });
    return res.end('<html>maintenance</html>');
  }
  res.writeHead(404, cors);
  res.end();
});
server.listen(port, '127.0.0.1', () => console.log(`faults: http://127.0.0.1:${server.address().port}`));
