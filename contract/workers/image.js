// Text-to-image worker (seed guide §3): an OpenAI chat endpoint whose answer is ONE server-sent event holding a
// markdown image. The prompt (last message) goes to /ai/run/{model}; the PNG is uploaded to an image host.
// Bindings: API_HOST (default https://api.cloudflare.com), ACCOUNT_ID, IMAGE_HOST (telegra.ph-style host:
// POST /upload multipart `file` -> [{"src": "/file/<name>"}], GET /file/<name>), IMAGE_MODEL (default model).

const MODELS = [
  "@cf/bytedance/stable-diffusion-xl-lightning",
  "@cf/lykon/dreamshaper-8-lcm",
  "@cf/runwayml/stable-diffusion-v1-5-img2img",
  "@cf/runwayml/stable-diffusion-v1-5-inpainting",
  "@cf/stabilityai/stable-diffusion-xl-base-1.0",
];
const CORS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
  "Access-Control-Allow-Headers": "Content-Type, Authorization",
  "Access-Control-Max-Age": "86400",
};

function json(body, status) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...CORS } });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const imageHost = (env.IMAGE_HOST || "https://telegra.ph").replace(/\/+$/, "");
    if (request.method === "OPTIONS") return new Response(null, { status: 204, headers: CORS });
    if (request.method === "GET" && url.pathname.startsWith("/file/")) {
      const upstream = await fetch(imageHost + url.pathname);
      return new Response(upstream.body, { status: upstream.status, headers: upstream.headers });
    }
    if (request.method !== "POST" || url.pathname !== "/v1/chat/completions") {
      return json({ error: { message: "Not Found" } }, 404);
    }
    const auth = request.headers.get("Authorization") || "";
    if (!auth.startsWith("Bearer ")) return json({ error: { message: "Unauthorized" } }, 401);

    let body;
    try {
      body = await request.json();
    } catch {
      return json({ error: { message: "Invalid JSON" } }, 400);
    }
    const messages = Array.isArray(body?.messages) ? body.messages : [];
    const prompt = messages.length ? messages[messages.length - 1].content : undefined;
    if (typeof prompt !== "string" || !prompt) return json({ error: { message: "No prompt" } }, 400);
    const model = MODELS.includes(body.model) ? body.model : env.IMAGE_MODEL || MODELS[0];

    const api = (env.API_HOST || "https://api.cloudflare.com").replace(/\/+$/, "");
    const res = await fetch(`${api}/client/v4/accounts/${env.ACCOUNT_ID}/ai/run/${model}`, {
      method: "POST",
      headers: { Authorization: auth, "Content-Type": "application/json" },
      body: JSON.stringify({ prompt, num_inference_steps: 20, guidance_scale: 7.5, strength: 1 }),
    });
    if (!res.ok) {
      return json({ error: { message: `Workers AI answered ${res.status}`, detail: await res.text() } }, 500);
    }
    const image = await res.arrayBuffer();

    const form = new FormData();
    form.append("file", new Blob([image], { type: res.headers.get("Content-Type") || "image/png" }), "image.png");
    const up = await fetch(`${imageHost}/upload`, { method: "POST", body: form });
    const uploaded = await up.json().catch(() => null);
    const src = Array.isArray(uploaded) ? uploaded[0]?.src : undefined;
    if (!up.ok || !src) return json({ error: { message: "Image upload failed" } }, 500);

    const created = Math.floor(Date.now() / 1000);
    const chunk = {
      id: `imggen-${created}`,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [{ index: 0, delta: { content: `![](${url.origin}${src})` }, finish_reason: "stop" }],
    };
    return new Response(`data: ${JSON.stringify(chunk)}\n\n`, {
      headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", ...CORS },
    });
  },
};
