// env.AI from a Node script, answered by the emulator. Two ways, printed as one JSON line:
//   node scripts/platform-proxy.mjs options <binding connection string>
//     wrangler's own Miniflare options for wrangler.jsonc (unchanged), given the connection string
//     getPlatformProxy() has no option for; `mf.getBindings()` is the env getPlatformProxy() returns.
//   node scripts/platform-proxy.mjs proxy
//     getPlatformProxy({ environment: "emulator" }): env.AI is the stand-in Worker, which must be
//     running in `wrangler dev` (see docs/workers.md).
import { Miniflare } from "miniflare";
import { getPlatformProxy, unstable_getMiniflareWorkerOptions } from "wrangler";

const [mode, connection] = process.argv.slice(2);
const MODEL = "@cf/meta/llama-3.1-8b-instruct";

async function exercise(env) {
  const text = await env.AI.run(MODEL, { prompt: "Hello from Node" });
  const stream = await env.AI.run(MODEL, { prompt: "Hello", stream: true });
  let streamed = "";
  for await (const chunk of stream) streamed += new TextDecoder().decode(chunk);
  let error;
  try {
    await env.AI.run("@cf/does/not-exist", { prompt: "x" });
  } catch (e) {
    error = e.message;
  }
  const models = await env.AI.models({ task: "Translation" });
  // Copied out as plain JSON while the proxy is alive (RPC results are stubs until then).
  return JSON.parse(JSON.stringify({ text, streamed, error, models: models.map((m) => m.name) }));
}

let result;
if (mode === "options") {
  const { workerOptions } = unstable_getMiniflareWorkerOptions("./wrangler.jsonc", undefined, {
    remoteProxyConnectionString: new URL(connection),
  });
  const mf = new Miniflare({ ...workerOptions, modules: true, script: "export default {}" });
  try {
    result = await exercise(await mf.getBindings());
  } finally {
    await mf.dispose();
  }
} else {
  const { env, dispose } = await getPlatformProxy({ environment: "emulator", persist: false });
  try {
    result = await exercise(env);
  } finally {
    await dispose();
  }
}
process.stdout.write(JSON.stringify(result) + "\n");
