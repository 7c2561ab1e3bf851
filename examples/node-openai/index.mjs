// Chat, a streamed chat and embeddings through the openai package, against Workers AI's
// OpenAI-compatible endpoint — or the emulator: `workers-ai-emulator serve`, then
//   WORKERS_AI_BASE_URL=http://127.0.0.1:8787 node index.mjs
import OpenAI from "openai";

const origin = process.env.WORKERS_AI_BASE_URL ?? "http://127.0.0.1:8787"; // https://api.cloudflare.com for real
const accountId = process.env.CLOUDFLARE_ACCOUNT_ID ?? "0123456789abcdef0123456789abcdef";
const client = new OpenAI({
  apiKey: process.env.CLOUDFLARE_API_TOKEN ?? "any-token",
  baseURL: `${origin}/client/v4/accounts/${accountId}/ai/v1`,
});

const chat = await client.chat.completions.create({
  model: "@cf/meta/llama-3-8b-instruct",
  messages: [{ role: "user", content: "Where did the phrase Hello World come from?" }],
});
console.log("chat:", chat.choices[0].message.content);

let streamed = "";
const stream = await client.chat.completions.create({
  model: "@cf/meta/llama-3-8b-instruct",
  messages: [{ role: "user", content: "Count to five." }],
  stream: true,
});
for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
console.log("stream:", streamed);

// encoding_format "float": the Node SDK otherwise asks for base64 and decodes whatever comes back.
const embeddings = await client.embeddings.create({
  model: "@cf/baai/bge-small-en-v1.5",
  input: ["hello", "world"],
  encoding_format: "float",
});
console.log("embeddings:", embeddings.data.length, "vectors of", embeddings.data[0].embedding.length);
