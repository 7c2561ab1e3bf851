// Runs in Node before the Workers pool starts: attach to the emulator at $WORKERS_AI_EMULATOR_URL,
// or start one on the port vitest.config.js expects, and stop it when the run ends.
import { Emulator } from "workers-ai-emulator";

export default async function () {
  const url = process.env.WORKERS_AI_EMULATOR_URL ?? "http://127.0.0.1:8799";
  try {
    await Emulator.attach(url, { timeoutMs: 500 });
    return undefined;
  } catch {
    const emulator = await Emulator.start({ port: Number(new URL(url).port) });
    return () => emulator.stop();
  }
}
