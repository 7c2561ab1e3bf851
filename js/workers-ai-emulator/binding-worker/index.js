// A stand-in for env.AI where Miniflare's AI binding cannot be pointed at the emulator (`wrangler dev`,
// `getPlatformProxy()`): bind this Worker as a service named AI and it answers `run`, `models` and
// `toMarkdown` over RPC the way workerd's ai-api client does (cloudflare/workerd,
// src/cloudflare/internal/ai-api.ts), sending the same requests to the emulator's binding surface.
import { WorkerEntrypoint } from "cloudflare:workers";

const ENDPOINT = "https://workers-binding.ai";

export class InferenceUpstreamError extends Error {
  constructor(message, name = "InferenceUpstreamError") {
    super(message);
    this.name = name;
  }
}

function findStreamKey(inputs) {
  return Object.keys(inputs).find((key) => {
    const value = inputs[key];
    return value instanceof ReadableStream || (value && typeof value === "object" && value.body instanceof ReadableStream);
  });
}

async function parseError(response) {
  const content = await response.text();
  try {
    const parsed = JSON.parse(content);
    if (parsed.internalCode) {
      return new InferenceUpstreamError(`${parsed.internalCode}: ${parsed.description}`, parsed.name);
    }
    if (parsed.errors?.[0]) return new InferenceUpstreamError(`${parsed.errors[0].code}: ${parsed.errors[0].message}`);
  } catch {
    // not JSON: the text itself
  }
  return new InferenceUpstreamError(content);
}

export default class WorkersAiEmulatorBinding extends WorkerEntrypoint {
  /** One request to the emulator, framed as Miniflare's remote-proxy client frames it. */
  #send(url, { method = "POST", headers = {}, body } = {}) {
    const framed = new Headers({ "MF-URL": url, "MF-Binding": "AI" });
    for (const [name, value] of Object.entries(headers)) framed.set(`MF-Header-${name}`, value);
    const connection = this.env.WORKERS_AI_EMULATOR_URL ?? "http://127.0.0.1:8787/";
    return fetch(connection, { method, headers: framed, body, duplex: body instanceof ReadableStream ? "half" : undefined });
  }

  async run(model, inputs, options = {}) {
    const { prefix, extraHeaders, sessionOptions, signal, ...cleaned } = options;
    const headers = {
      ...(extraHeaders ?? {}),
      "cf-consn-sdk-version": "2.0.0",
      "cf-consn-model-id": `${prefix ? `${prefix}:` : ""}${model}`,
    };
    const streamKey = findStreamKey(inputs);
    let response;
    if (streamKey) {
      const { [streamKey]: stream, ...userInputs } = inputs;
      const url = new URL(`${ENDPOINT}/run`);
      for (const [key, value] of Object.entries({ ...cleaned, version: "3", userInputs: JSON.stringify(userInputs) })) {
        url.searchParams.set(key, typeof value === "string" ? value : JSON.stringify(value));
      }
      const body = stream instanceof ReadableStream ? stream : stream.body;
      headers["content-type"] = stream.contentType ?? "application/octet-stream";
      response = await this.#send(url.href, { headers, body });
    } else {
      headers["content-type"] = "application/json";
      const path = cleaned.gateway?.id ? "/ai-gateway/run" : "/run";
      response = await this.#send(`${ENDPOINT}${path}?version=3`, {
        headers,
        body: JSON.stringify({ inputs, options: cleaned }),
      });
    }
    if (cleaned.returnRawResponse) return response;
    if (!response.ok || !response.body) throw await parseError(response);
    if (response.headers.get("content-type") === "application/json") return response.json();
    return response.body;
  }

  async models(params = {}) {
    const url = new URL(`${ENDPOINT}/ai-api/models/search`);
    for (const [key, value] of Object.entries(params)) url.searchParams.set(key, String(value));
    const response = await this.#send(url.href, { method: "GET" });
    const data = await response.json();
    if (response.status !== 200) throw new Error(data.errors?.[0]?.message ?? "Internal Error");
    return data.result;
  }

  async toMarkdown(files, options) {
    const list = Array.isArray(files) ? files : [files];
    const encoded = [];
    for (const file of list) {
      const bytes = new Uint8Array(await file.blob.arrayBuffer());
      let binary = "";
      for (const byte of bytes) binary += String.fromCharCode(byte);
      encoded.push({ name: file.name, mimeType: file.blob.type, data: btoa(binary) });
    }
    const response = await this.#send(`${ENDPOINT}/to-everything/markdown/transformer`, {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ files: encoded, options }),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(data.errors?.[0]?.message ?? "Internal Error");
    return Array.isArray(files) ? data.result : data.result[0];
  }

  /** Plain HTTP to this Worker: a health line, so `wrangler dev` on it alone shows where it points. */
  async fetch() {
    return new Response(`workers-ai-emulator binding stand-in -> ${this.env.WORKERS_AI_EMULATOR_URL}\n`);
  }
}
