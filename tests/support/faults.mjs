// A misbehaving "proxy" for the browser error tests: every route answers CORS for any origin
// so the SDK can read what went wrong. Usage: node faults.mjs <port>
import { createServer } from 'node:http';

let received = 0;
let last = '';
const port = Number(process.argv[2] ?? 0);
const server = createServer((req, res) => {
  const cors = { 'access-control-allow-origin': req.headers.origin ?? '*' };
  const path = new URL(req.url, 'http://x').pathname;
  if (path === '/count') {
    res.writeHead(200, { ...cors, 'content-type': 'application/json' });
    return res.end(JSON.stringify({ received, last }));
  }
  received += 1;
  last = req.url;
  if (path === '/hang') return; // never answers
  if (path === '/status500') {
    res.writeHead(500, { ...cors, 'content-type': 'text/plain' });
    return res.end('internal error');
  }
  if (path === '/grant') {
    // A well-formed grant with a non-canonical returnOrigin, and a return page on this origin
    // that posts authFail for the call's state.
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const state = JSON.parse(new URLSearchParams(body).get('requestData')).state;
      const self = `http://127.0.0.1:${server.address().port}`;
      res.writeHead(200, { ...cors, 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 0, message: 'SUCCESS', result: {
        pageUrl: `${self}/return-page?state=${state}`, returnOrigin: self.replace('http', 'HTTP') } }));
    });
    return;
  }
  if (path === '/return-page') {
    const state = new URL(req.url, 'http://x').searchParams.get('state');
    res.writeHead(200, { 'content-type': 'text/html' });
    return res.end(`<!doctype html><script>parent.postMessage({ type: 'qys-sdk', v: 1,
      state: ${JSON.stringify(state)}, event: 'authFail', data: {} }, '*');</script>`);
  }
  if (path === '/garbage') {
    res.writeHead(200, { ...cors, 'content-type': 'text/html' });
    return res.end('<html>maintenance</html>');
  }
  res.writeHead(404, cors);
  res.end();
});
server.listen(port, '127.0.0.1', () => console.log(`faults: http://127.0.0.1:${server.address().port}`));
