// A small Worker that uses Workers AI the two usual ways: env.AI.run directly, and the Vercel AI SDK
// through workers-ai-provider with `binding: env.AI`.
import { generateText, streamText, tool, stepCountIs } from "ai";
import { createWorkersAI } from "workers-ai-provider";
import { z } from "zod";
import { MODEL } from "./model.js";

async function summarize(request, env) {
  const { text } = await request.json();
  try {
    const answer = await env.AI.run(MODEL, {
      messages: [
        { role: "system", content: "Summarize the user's text in one sentence." },
        { role: "user", content: text },
      ],
    });
    return Response.json({ summary: answer.response, requestId: env.AI.lastRequestId });
  } catch (error) {
    // What a real Worker sees when Workers AI fails: InferenceUpstreamError "<code>: <description>".
    return Response.json({ error: error.message, name: error.name }, { status: 503 });
  }
}

async function stream(request, env) {
  const { prompt } = await request.json();
  const events = await env.AI.run(MODEL, { prompt, stream: true });
  return new Response(events, { headers: { "content-type": "text/event-stream" } });
}

async function provider(request, env) {
  const { mode, prompt } = await request.json();
  const workersai = createWorkersAI({ binding: env.AI });
  const model = workersai(MODEL);
  if (mode === "text") {
    const result = await generateText({ model, prompt });
    return Response.json({ text: result.text, usage: result.usage });
  }
  if (mode === "stream") {
    const result = streamText({ model, prompt });
    let text = "";
    let chunks = 0;
    for await (const delta of result.textStream) {
      text += delta;
      chunks += 1;
    }
    return Response.json({ text, chunks });
  }
  if (mode === "tool") {
    const result = await generateText({
      model,
      prompt,
      tools: {
        weather: tool({
          description: "The weather in a city",
          inputSchema: z.object({ city: z.string().describe("The city") }),
          execute: async ({ city }) => ({ city, forecast: "sunny", celsius: 21 }),
        }),
      },
      stopWhen: stepCountIs(2),
    });
    const calls = result.steps.flatMap((step) => step.toolCalls.map((c) => ({ name: c.toolName, input: c.input })));
    const results = result.steps.flatMap((step) => step.toolResults.map((r) => r.output));
    return Response.json({ calls, results, text: result.text });
  }
  return new Response("unknown mode", { status: 400 });
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (request.method === "POST" && pathname === "/summarize") return summarize(request, env);
    if (request.method === "POST" && pathname === "/stream") return stream(request, env);
    if (request.method === "POST" && pathname === "/provider") return provider(request, env);
    return new Response("not found", { status: 404 });
  },
};
