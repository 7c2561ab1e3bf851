export * from "./client.js";
import { EmulatorClient } from "./client.js";

export interface StartOptions {
  /** The executable (default $WORKERS_AI_EMULATOR_BIN, else `workers-ai-emulator` on PATH). */
  command?: string;
  host?: string;
  /** Default: a free port. */
  port?: number;
  seed?: number;
  plan?: "free" | "paid";
  dataDir?: string;
  token?: string;
  /** More `serve` flags, e.g. ["--mode", "replay", "--cassette", "ci"]. */
  args?: string[];
  env?: Record<string, string>;
  stderr?: "inherit" | "ignore" | "pipe";
  timeoutMs?: number;
}

export declare class Emulator extends EmulatorClient {
  static start(options?: StartOptions): Promise<Emulator>;
  static attach(url?: string, options?: { token?: string; timeoutMs?: number }): Promise<Emulator>;
  stop(): Promise<void>;
}
