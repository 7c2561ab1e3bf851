// Node entry point: start or attach to a `workers-ai-emulator serve` process; the control-plane
// client itself (client.js) also runs inside workerd.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { EmulatorClient } from "./client.js";

export * from "./client.js";

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitHealthy(client, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) {
      throw new Error(`workers-ai-emulator exited with code ${child.exitCode} before answering`);
    }
    try {
      return await client.health();
    } catch (error) {
      lastError = error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`workers-ai-emulator at ${client.url} did not answer within ${timeoutMs} ms: ${lastError}`);
}

/** A running emulator: the control-plane client plus, when this process started it, `stop()`. */
export class Emulator extends EmulatorClient {
  #child;

  constructor(url, { token, child } = {}) {
    super(url, { token });
    this.#child = child;
  }

  /**
   * Start `workers-ai-emulator serve` on a free port (command: `options.command`, else
   * $WORKERS_AI_EMULATOR_BIN, else `workers-ai-emulator` on PATH) and wait until it answers.
   */
  static async start(options = {}) {
    const port = options.port ?? (await freePort());
    const host = options.host ?? "127.0.0.1";
    const command = options.command ?? process.env.WORKERS_AI_EMULATOR_BIN ?? "workers-ai-emulator";
    const args = ["serve", "--host", host, "--port", String(port)];
    if (options.seed !== undefined) args.push("--seed", String(options.seed));
    if (options.plan !== undefined) args.push("--plan", options.plan);
    if (options.dataDir !== undefined) args.push("--data-dir", options.dataDir);
    if (options.token !== undefined) args.push("--token", options.token);
    args.push(...(options.args ?? []));
    const child = spawn(command, args, {
      stdio: ["ignore", "ignore", options.stderr ?? "inherit"],
      env: { ...process.env, ...(options.env ?? {}) },
    });
    const spawned = new Promise((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    await spawned;
    const emulator = new Emulator(`http://${host}:${port}`, { token: options.token, child });
    try {
      await waitHealthy(emulator, child, options.timeoutMs ?? 30_000);
    } catch (error) {
      await emulator.stop();
      throw error;
    }
    return emulator;
  }

  /** Use an emulator that is already running (default $WORKERS_AI_EMULATOR_URL or :8787). */
  static async attach(url = process.env.WORKERS_AI_EMULATOR_URL ?? "http://127.0.0.1:8787", options = {}) {
    const emulator = new Emulator(url, { token: options.token });
    await waitHealthy(emulator, undefined, options.timeoutMs ?? 10_000);
    return emulator;
  }

  /** Stop the process `start` launched (attached emulators are left running). */
  async stop() {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
