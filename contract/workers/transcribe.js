// OpenAI-style transcription worker (seed guide §4): POST /v1/audio/transcriptions (multipart: file, model)
// -> raw file bytes as application/octet-stream to /ai/run/{model} with the caller's Authorization -> {text}.
// Bindings: API_HOST (default https://api.cloudflare.com), ACCOUNT_ID.

function json(body, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (request.method !== "POST" || url.pathname !== "/v1/audio/transcriptions") {
      return json({ error: "Not Found" }, 404);
    }
    let form;
    try {
      form = await request.formData();
    } catch {
      return json({ error: "Expected multipart/form-data with file and model" }, 400);
    }
    const file = form.get("file");
    let model = form.get("model");
    if (!file || typeof file === "string" || !model) {
      return json({ error: "Missing file or model" }, 400);
    }
    if (!String(model).startsWith("@")) model = "@cf/openai/whisper"; // OpenAI names such as whisper-1

    const api = (env.API_HOST || "https://api.cloudflare.com").replace(/\/+$/, "");
    const res = await fetch(`${api}/client/v4/accounts/${env.ACCOUNT_ID}/ai/run/${model}`, {
      method: "POST",
      headers: {
        Authorization: request.headers.get("Authorization") ?? "",
        "Content-Type": "application/octet-stream",
      },
      body: await file.arrayBuffer(),
    });
    const data = await res.json().catch(() => null);
    if (!res.ok || !data?.success) {
      return json({ error: data?.errors?.[0]?.message ?? `Workers AI answered ${res.status}` }, res.ok ? 502 : res.status);
    }
    return json({ text: data.result.text });
  },
};
