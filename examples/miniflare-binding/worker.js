// A Worker that uses env.AI the way application code does; each path exercises one part of the binding.
// Errors are caught and returned so the caller sees what user code sees (name, message, lastRequestId).
function errorInfo(env, error) {
  return { error: { name: error.name, message: error.message }, lastRequestId: env.AI.lastRequestId };
}

async function readAll(stream) {
  const chunks = [];
  let total = 0;
  for await (const chunk of stream) {
    chunks.push(chunk);
    total += chunk.byteLength;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

const cases = {
  async text(env) {
    const result = await env.AI.run("@cf/meta/llama-3.1-8b-instruct", { prompt: "Hello from a Worker" });
    return { result, lastRequestId: env.AI.lastRequestId };
  },
  async chat(env) {
    const result = await env.AI.run("@cf/meta/llama-3.1-8b-instruct", {
      messages: [{ role: "user", content: "Say hi" }],
    });
    return { result };
  },
  async stream(env) {
    const stream = await env.AI.run("@cf/meta/llama-3.1-8b-instruct", { prompt: "Hello", stream: true });
    const isStream = stream instanceof ReadableStream;
    const text = new TextDecoder().decode(await readAll(stream));
    return { isStream, text };
  },
  async embeddings(env) {
    const result = await env.AI.run("@cf/baai/bge-base-en-v1.5", { text: ["a", "b"] });
    return { shape: result.shape, dims: result.data[0].length };
  },
  async image(env) {
    const png = await env.AI.run("@cf/stabilityai/stable-diffusion-xl-base-1.0", { prompt: "a cat" });
    const bytes = await readAll(png);
    return { isStream: png instanceof ReadableStream, magic: Array.from(bytes.slice(0, 4)), bytes: bytes.length };
  },
  async raw(env) {
    const response = await env.AI.run("@cf/meta/llama-3.1-8b-instruct", { prompt: "Hi" }, { returnRawResponse: true });
    return {
      isResponse: response instanceof Response,
      status: response.status,
      contentType: response.headers.get("content-type"),
      body: await response.json(),
    };
  },
  async audio(env) {
    // A ReadableStream input: the binding sends it as the raw request body.
    const wav = await fetch("http://audio.test/tone.wav"); // served by the outbound service below
    const result = await env.AI.run("@cf/deepgram/nova-3", {
      audio: { body: wav.body, contentType: "audio/wav" },
      detect_language: true,
    });
    return { result };
  },
  async gateway(env) {
    const result = await env.AI.run("@cf/meta/llama-3.1-8b-instruct", { prompt: "Hi" }, { gateway: { id: "my-gateway" } });
    return { result, aiGatewayLogId: env.AI.aiGatewayLogId };
  },
  async models(env) {
    const models = await env.AI.models({ task: "Translation" });
    return { names: models.map((m) => m.name) };
  },
  async markdown(env) {
    const results = await env.AI.toMarkdown([
      { name: "page.html", blob: new Blob(["<h1>Title</h1><p>Body</p>"], { type: "text/html" }) },
      { name: "doc.pdf", blob: new Blob(["%PDF-1.4"], { type: "application/pdf" }) },
    ]);
    return { results };
  },
  async unknownModel(env) {
    return env.AI.run("@cf/does/not-exist", { prompt: "x" });
  },
  async badInput(env) {
    return env.AI.run("@cf/meta/llama-3.1-8b-instruct", { nothing: true });
  },
};

export default {
  async fetch(request, env) {
    const name = new URL(request.url).pathname.slice(1);
    const run = cases[name];
    if (!run) return new Response(`no case ${name}`, { status: 404 });
    try {
      return Response.json(await run(env));
    } catch (error) {
      return Response.json(errorInfo(env, error));
    }
  },
};
