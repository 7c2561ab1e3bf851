import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { EmulatorClient } from "workers-ai-emulator/client";
import { beforeEach, describe, expect, it } from "vitest";
import worker from "../src/index.js";
import { MODEL } from "../src/model.js";

const emulator = new EmulatorClient(env.EMULATOR_URL);

async function call(path, body, testEnv) {
  const ctx = createExecutionContext();
  const request = new Request(`http://example.com${path}`, { method: "POST", body: JSON.stringify(body) });
  const response = await worker.fetch(request, testEnv, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

describe("summarize", () => {
  // One line per test: an account of its own, so files running in parallel never see each other's
  // stubs, faults, requests or usage.
  let ai;
  let testEnv;
  beforeEach(() => {
    ai = emulator.scope();
    testEnv = { ...env, AI: ai.wrap(env.AI) };
  });

  it("answers with the emulator's deterministic fake", async () => {
    const first = await (await call("/summarize", { text: "Workers AI runs models." }, testEnv)).json();
    const again = await (await call("/summarize", { text: "Workers AI runs models." }, testEnv)).json();
    expect(first.summary).toBeTypeOf("string");
    expect(first.summary).toBe(again.summary);
    expect(first.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const usage = await ai.usage();
    expect(usage.requests).toBe(2);
    expect(usage.neurons).toBeGreaterThan(0);
  });

  it("returns what a stub says", async () => {
    await ai.stub({ model: MODEL, text: "A one-line summary." });
    const body = await (await call("/summarize", { text: "anything" }, testEnv)).json();
    expect(body.summary).toBe("A one-line summary.");
    const [logged] = await ai.requests();
    expect(logged).toMatchObject({ surface: "binding", model: MODEL, stubbed: true, status: 200 });
  });

  it("surfaces a capacity fault as InferenceUpstreamError", async () => {
    await ai.fault({ model: MODEL, kind: "capacity", times: 1 });
    const response = await call("/summarize", { text: "anything" }, testEnv);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      name: "InferenceUpstreamError",
      error: "3040: Capacity temporarily exceeded, please try again.",
    });
    // `times: 1`: the next call succeeds.
    expect((await call("/summarize", { text: "anything" }, testEnv)).status).toBe(200);
  });

  it("streams server-sent events", async () => {
    await ai.stub({ model: MODEL, text: "Streaming works." });
    const response = await call("/stream", { prompt: "Hi" }, testEnv);
    const text = await response.text();
    const pieces = text
      .split("\n\n")
      .filter((block) => block.startsWith("data: {"))
      .map((block) => JSON.parse(block.slice(6)).response ?? "");
    expect(pieces.join("")).toBe("Streaming works.");
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
  });
});
