// DeepLX-compatible translation worker (seed guide §5): POST /translate?password=KEY {text, source_lang, target_lang}
// -> @cf/meta/m2m100-1.2b -> {alternatives, code, data, id, source_lang, target_lang}.
// Bindings: API_HOST (default https://api.cloudflare.com), ACCOUNT_ID, API_TOKEN, PASSWORD.

const CORS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Methods": "POST, OPTIONS",
  "Access-Control-Allow-Headers": "Content-Type, Authorization",
  "Access-Control-Max-Age": "86400",
};

function json(body, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...CORS } });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (request.method === "OPTIONS") return new Response(null, { status: 204, headers: CORS });
    if (url.pathname !== "/translate" || request.method !== "POST") return json({ error: "Not Found" }, 404);
    if (url.searchParams.get("password") !== env.PASSWORD) return json({ error: "Unauthorized" }, 401);

    let body;
    try {
      body = await request.json();
    } catch {
      return json({ error: "Invalid JSON" }, 400);
    }
    const { text, source_lang, target_lang } = body ?? {};
    if (!text || !source_lang || !target_lang) {
      return json({ error: "Missing required fields: text, source_lang, target_lang" }, 400);
    }

    const api = (env.API_HOST || "https://api.cloudflare.com").replace(/\/+$/, "");
    try {
      const res = await fetch(`${api}/client/v4/accounts/${env.ACCOUNT_ID}/ai/run/@cf/meta/m2m100-1.2b`, {
        method: "POST",
        headers: { Authorization: `Bearer ${env.API_TOKEN}`, "Content-Type": "application/json" },
        body: JSON.stringify({
          text,
          source_lang: String(source_lang).toLowerCase(),
          target_lang: String(target_lang).toLowerCase(),
        }),
      });
      if (!res.ok) throw new Error(`Workers AI answered ${res.status}`);
      const data = await res.json();
      const translated = data?.result?.translated_text;
      if (typeof translated !== "string") throw new Error("no translated_text");
      return json({
        alternatives: [],
        code: 200,
        data: translated,
        id: Math.floor(Math.random() * 10_000_000_000),
        source_lang,
        target_lang,
      });
    } catch {
      return json({ error: "Translation failed" }, 500);
    }
  },
};
