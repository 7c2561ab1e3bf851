// env.AI answered by workers-ai-emulator: the wrangler config stays as it is; two settings here
// replace the remote proxy (which needs a Cloudflare login): `remoteBindings: false` and Miniflare's
// own `ai.remoteProxyConnectionString`, pointed at the emulator.
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

// global-setup.js starts `workers-ai-emulator serve` here unless one already answers.
const emulatorUrl = process.env.WORKERS_AI_EMULATOR_URL ?? "http://127.0.0.1:8799";

export default defineConfig({
  plugins: [
    cloudflareTest({
      remoteBindings: false,
      wrangler: { configPath: "./wrangler.jsonc" },
      miniflare: {
        ai: { binding: "AI", remoteProxyConnectionString: new URL(`${emulatorUrl}/`) },
        bindings: { EMULATOR_URL: emulatorUrl },
      },
    }),
  ],
  test: {
    globalSetup: ["./global-setup.js"],
    testTimeout: 30_000, // generous for busy CI machines; each test takes well under a second idle
  },
});
