// The free-model guide's three workers (image SSE wrapper, transcriptions, DeepLX translation) in
// workerd through Miniflare, against a workers-ai-emulator this script starts, with a stand-in for the
// image host. One command:  node examples/guide-workers/start.mjs        (Ctrl-C stops everything)
//                           node examples/guide-workers/start.mjs --check (one call through each, then exit)
// The worker scripts and the pinned Miniflare are the ones the contract tests run (contract/workers);
// install them once with `npm ci --prefix contract/workers`.
// Environment: EMULATOR (command, default `workers-ai-emulator`), EMULATOR_PORT (default 8787),
// DATA_DIR (default .guide-workers-data), PASSWORD (DeepLX password, default `guide-password`).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const workersDir = join(here, "..", "..", "contract", "workers");
const require = createRequire(join(workersDir, "package.json"));
let Miniflare;
try {
  ({ Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href));
} catch {
  console.error("Miniflare is not installed: run `npm ci --prefix contract/workers` once, then try again.");
  process.exit(2);
}

const ACCOUNT = "0123456789abcdef0123456789abcdef";
const TOKEN = "guide-token"; // any non-empty token works against the emulator
const PASSWORD = process.env.PASSWORD ?? "guide-password";
const port = Number(process.env.EMULATOR_PORT ?? 8787);
const emulatorBase = `http://127.0.0.1:${port}`;
const check = process.argv.includes("--check");
const instances = [];
let closing = false;
const wav = readFileSync(join(here, "..", "..", "fixtures", "media", "tone.wav"));

// 1. The emulator.
const emulator = spawn(
  process.env.EMULATOR ?? "workers-ai-emulator",
  ["serve", "--port", String(port), "--data-dir", resolve(process.env.DATA_DIR ?? ".guide-workers-data")],
  { stdio: ["ignore", check ? "ignore" : "inherit", "inherit"] },
);
// Whatever ends this script ends the emulator too.
process.on("exit", () => emulator.kill("SIGTERM"));
process.on("uncaughtException", (err) => {
  console.error(err);
  shutdown(1);
});
process.on("unhandledRejection", (err) => {
  console.error(err);
  shutdown(1);
});
emulator.on("exit", (code) => {
  if (!closing) {
    console.error(`the emulator exited (${code}); is port ${port} free?`);
    process.exit(1);
  }
});
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`${emulatorBase}/__emulator__/health`)).ok) break;
  } catch {}
  if (i > 300) throw new Error("the emulator did not answer within 30 s");
  await new Promise((r) => setTimeout(r, 100));
}

// 2. A telegra.ph-style image host: POST /upload (multipart `file`) -> [{"src": "/file/<name>"}], GET /file/<name>.
const images = new Map();
const imageHost = createServer(async (req, res) => {
  if (req.method === "POST" && req.url === "/upload") {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const form = await new Response(Buffer.concat(chunks), { headers: { "content-type": req.headers["content-type"] } }).formData();
    const file = form.get("file");
    const bytes = Buffer.from(await file.arrayBuffer());
    const name = `/file/${createHash("sha256").update(bytes).digest("hex").slice(0, 16)}.png`;
    images.set(name, { bytes, type: file.type || "image/png" });
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify([{ src: name }]));
  } else if (req.method === "GET" && images.has(req.url)) {
    const { bytes, type } = images.get(req.url);
    res.writeHead(200, { "content-type": type }).end(bytes);
  } else res.writeHead(404).end();
});
await new Promise((r) => imageHost.listen(0, "127.0.0.1", r));
const imageBase = `http://127.0.0.1:${imageHost.address().port}`;

// 3. The workers: their fetches to api.cloudflare.com and the image host go to the local stand-ins.
const routes = { "api.cloudflare.com": emulatorBase, "img.guide.local": imageBase };
const outboundService = async (request) => {
  const u = new URL(request.url);
  const origin = routes[u.host];
  if (!origin) return new Response(`blocked outbound host ${u.host}`, { status: 502 });
  const headers = new Headers(request.headers);
  headers.delete("host");
  return fetch(origin + u.pathname + u.search, {
    method: request.method, headers, redirect: "manual", duplex: "half",
    body: ["GET", "HEAD"].includes(request.method) ? undefined : request.body,
  });
};
const specs = {
  image: { script: "image.js", bindings: { ACCOUNT_ID: ACCOUNT, IMAGE_HOST: "http://img.guide.local" } },
  transcribe: { script: "transcribe.js", bindings: { ACCOUNT_ID: ACCOUNT } },
  translate: { script: "translate.js", bindings: { ACCOUNT_ID: ACCOUNT, API_TOKEN: TOKEN, PASSWORD } },
};
const urls = {};
process.chdir(workersDir); // workerd reads scripts from below its working directory only
for (const [name, spec] of Object.entries(specs)) {
  const path = join(workersDir, spec.script);
  const mf = new Miniflare({
    modules: true, script: readFileSync(path, "utf8"), scriptPath: path, bindings: spec.bindings,
    compatibilityDate: "2024-09-23", outboundService, host: "127.0.0.1", port: 0,
  });
  instances.push(mf);
  urls[name] = String(await mf.ready).replace(/\/$/, "");
}

async function shutdown(code = 0) {
  if (closing) return;
  closing = true;
  await Promise.allSettled(instances.map((mf) => mf.dispose()));
  imageHost.close();
  emulator.kill("SIGTERM");
  process.exit(code);
}
process.on("SIGINT", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));

if (check) {
  const auth = { Authorization: `Bearer ${TOKEN}` };
  const img = await fetch(`${urls.image}/v1/chat/completions`, {
    method: "POST", headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({ model: "@cf/bytedance/stable-diffusion-xl-lightning", messages: [{ role: "user", content: "a lighthouse" }] }),
  });
  const event = JSON.parse((await img.text()).replace(/^data: /, "").trim());
  const src = event.choices[0].delta.content.match(/\]\((.*)\)/)[1];
  const png = await fetch(src.startsWith("http") ? src : `${urls.image}${src}`);
  const form = new FormData();
  form.set("file", new Blob([wav], { type: "audio/wav" }), "tone.wav");
  form.set("model", "@cf/openai/whisper-tiny-en");
  const stt = await (await fetch(`${urls.transcribe}/v1/audio/transcriptions`, { method: "POST", headers: auth, body: form })).json();
  const tr = await (await fetch(`${urls.translate}/translate?password=${PASSWORD}`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ text: "Good morning", source_lang: "EN", target_lang: "FR" }),
  })).json();
  const usage = await (await fetch(`${emulatorBase}/__emulator__/usage`)).json();
  console.log(JSON.stringify({ image: png.status, image_type: png.headers.get("content-type"), text: stt.text, translation: tr.data, neurons: usage.neurons }));
  await shutdown(png.status === 200 && stt.text && tr.code === 200 ? 0 : 1);
} else {
  console.log(`
The guide's workers, against the emulator at ${emulatorBase}:
  image (OpenAI chat -> one SSE event with a markdown image)  ${urls.image}/v1/chat/completions
  transcriptions (multipart file + model)                     ${urls.transcribe}/v1/audio/transcriptions
  DeepLX translation                                          ${urls.translate}/translate?password=${PASSWORD}
  OneAPI-style channel for chat and embeddings                ${emulatorBase}/client/v4/accounts/${ACCOUNT}//ai
Any Bearer token works. Dashboard: ${emulatorBase}/__emulator__/   Ctrl-C stops everything.`);
}
