// The Miniflare recipe: env.AI answered by a running workers-ai-emulator.
// Usage: node run.mjs <binding connection string> <case> [<case> …]; prints one JSON object {case: answer}.
import { Miniflare } from "miniflare";
import { readFileSync } from "node:fs";

const [connection, ...names] = process.argv.slice(2);
const wav = readFileSync(new URL("../../fixtures/media/tone.wav", import.meta.url));

const mf = new Miniflare({
  modules: true,
  scriptPath: new URL("./worker.js", import.meta.url).pathname,
  compatibilityDate: "2025-09-01",
  ai: { binding: "AI", remoteProxyConnectionString: new URL(connection) },
  // The Worker's own outbound fetches (not env.AI): a local sample file, nothing else.
  outboundService: (request) =>
    new URL(request.url).host === "audio.test"
      ? new Response(wav, { headers: { "content-type": "audio/wav" } })
      : new Response("blocked", { status: 502 }),
});
try {
  const answers = {};
  for (const name of names) {
    const response = await mf.dispatchFetch(`http://localhost/${name}`);
    answers[name] = await response.json();
  }
  process.stdout.write(JSON.stringify(answers) + "\n");
} finally {
  await mf.dispose();
}
