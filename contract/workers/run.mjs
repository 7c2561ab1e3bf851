// Start the contract workers in workerd through Miniflare and print one JSON line {"name": url, ...}.
// Usage: node run.mjs '<config JSON>' where config = {routes: {"api.cloudflare.com": "http://127.0.0.1:PORT", ...},
//        workers: {name: {script: "image.js", bindings: {...}}}}. Outbound fetches to a host in `routes` go to
// that local origin (path and query kept); every other host gets 502. Runs until stdin closes or SIGTERM.
import { Miniflare } from "miniflare";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const config = JSON.parse(process.argv[2]);

const outboundService = async (request) => {
  const u = new URL(request.url);
  const origin = config.routes[u.host] ?? config.routes[u.hostname];
  if (!origin) return new Response(`blocked outbound host ${u.host}`, { status: 502 });
  const headers = new Headers(request.headers);
  headers.delete("host");
  return fetch(origin + u.pathname + u.search, {
    method: request.method,
    headers,
    body: ["GET", "HEAD"].includes(request.method) ? undefined : request.body,
    duplex: "half",
    redirect: "manual",
  });
};

const instances = [];
const urls = {};
for (const [name, spec] of Object.entries(config.workers)) {
  const mf = new Miniflare({
    modules: true,
    script: readFileSync(join(here, spec.script), "utf8"),
    scriptPath: join(here, spec.script),
    bindings: spec.bindings ?? {},
    compatibilityDate: "2024-09-23",
    outboundService,
    host: "127.0.0.1",
    port: 0,
  });
  instances.push(mf);
  urls[name] = String(await mf.ready).replace(/\/$/, "");
}
process.stdout.write(JSON.stringify(urls) + "\n");

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  await Promise.allSettled(instances.map((mf) => mf.dispose()));
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
process.stdin.on("end", shutdown);
process.stdin.resume();
