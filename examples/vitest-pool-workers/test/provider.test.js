// The Vercel AI SDK through workers-ai-provider, with `binding: env.AI`.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { EmulatorClient } from "workers-ai-emulator/client";
import { beforeEach, expect, it } from "vitest";
import worker from "../src/index.js";
import { MODEL } from "../src/model.js";

const emulator = new EmulatorClient(env.EMULATOR_URL);
let ai;
let testEnv;
beforeEach(() => {
  ai = emulator.scope();
  testEnv = { ...env, AI: ai.wrap(env.AI) };
});

async function provider(body) {
  const ctx = createExecutionContext();
  const request = new Request("http://example.com/provider", { method: "POST", body: JSON.stringify(body) });
  const response = await worker.fetch(request, testEnv, ctx);
  await waitOnExecutionContext(ctx);
  expect(response.status).toBe(200);
  return response.json();
}

it("generateText", async () => {
  await ai.stub({ model: MODEL, text: "Hello from the emulator." });
  const body = await provider({ mode: "text", prompt: "Say hello" });
  expect(body.text).toBe("Hello from the emulator.");
  expect(body.usage.inputTokens).toBeGreaterThan(0);
});

it("streamText", async () => {
  await ai.stub({ model: MODEL, text: "One two three four five." });
  const body = await provider({ mode: "stream", prompt: "Count" });
  expect(body.text).toBe("One two three four five.");
  expect(body.chunks).toBeGreaterThan(1);
});

it("a tool call, then the answer", async () => {
  await ai.stub({
    model: MODEL,
    results: [
      { result: { response: null, tool_calls: [{ name: "weather", arguments: { city: "Lisbon" } }] } },
      { text: "It is sunny in Lisbon." },
    ],
  });
  const body = await provider({ mode: "tool", prompt: "Weather in Lisbon?" });
  expect(body.calls).toEqual([{ name: "weather", input: { city: "Lisbon" } }]);
  expect(body.results).toEqual([{ city: "Lisbon", forecast: "sunny", celsius: 21 }]);
  expect(body.text).toBe("It is sunny in Lisbon.");
  const logged = await ai.requests();
  expect(logged.map((r) => r.surface)).toEqual(["binding", "binding"]);
});
