// A static file server for the grounding page, on 127.0.0.1 only. It serves the repository root, so
// the page (/examples/browser/), the embedded backbone (/packages/diffusion-backbone/models/png-tiny-sd/), the
// wasm binaries (/node_modules/@tensorflow/tfjs-backend-wasm/dist/) and run folders
// (e.g. /demo-output/run/, for ?run=) all have URLs. GET and HEAD only; no directory listings and
// no dot files; / redirects to the page. Every file is served cross-origin isolated (COOP/COEP), so
// the page's wasm backend runs on threads.
//   node examples/browser/serve.mjs [--port N] [--root DIR]     (default port 8080; 0: any free port)
// The first line printed is the page's URL.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.wasm': 'application/wasm',
};

// Cross-origin isolation: the page gets SharedArrayBuffer, so tfjs-backend-wasm runs its threaded
// build (XNNPACK threads on Web Workers; tfjs takes half the logical cores, at most 8).
const CROSS_ORIGIN_ISOLATED = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

const { values } = parseArgs({ options: { port: { type: 'string', default: '8080' }, root: { type: 'string' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`serve.mjs: --port ${values.port}: expected an integer in [0, 65535]`);
  process.exit(2);
}
const root = path.resolve(values.root ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..'));
if (!fs.existsSync(root)) {
  console.error(`serve.mjs: --root ${values.root}: no such folder`);
  process.exit(2);
}

const server = http.createServer((request, response) => {
  const reply = (status, message) => {
    response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
    response.end(request.method === 'HEAD' ? undefined : `${message}\n`);
  };
  const redirect = (status, location) => {
    response.writeHead(status, { location });
    response.end();
  };
  if (request.method !== 'GET' && request.method !== 'HEAD') return reply(405, `${request.method} is not served; use GET`);
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(request.url, 'http://localhost').pathname);
  } catch {
    return reply(400, `bad URL ${request.url}`);
  }
  if (pathname === '/') return redirect(302, '/examples/browser/');
  if (pathname.split('/').some((part) => part.startsWith('.'))) return reply(404, `${pathname}: not served (hidden or relative path)`);
  let file = path.join(root, pathname);
  let stat = fs.statSync(file, { throwIfNoEntry: false });
  if (stat?.isDirectory()) {
    if (!pathname.endsWith('/')) return redirect(301, `${pathname}/`);
    file = path.join(file, 'index.html');
    stat = fs.statSync(file, { throwIfNoEntry: false });
  }
  if (!stat?.isFile()) return reply(404, `${pathname}: no such file`);
  response.writeHead(200, {
    'content-type': TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
    'content-length': stat.size,
    'cache-control': 'no-cache',
    ...CROSS_ORIGIN_ISOLATED,
  });
  if (request.method === 'HEAD') return response.end();
  fs.createReadStream(file)
    .on('error', () => response.destroy())
    .pipe(response);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${server.address().port}/examples/browser/`);
  console.log(`serving ${root}; build the page first (node examples/browser/build.mjs); Ctrl-C stops`);
});
