/** Header a `run` call's `extraHeaders` can carry to charge another account than the connection string's. */
export declare const ACCOUNT_HEADER: "x-workers-ai-emulator-account";
/** The banner's account: what `http://HOST:PORT/` (no account in the path) is charged to. */
export declare const DEFAULT_ACCOUNT: string;

export declare function randomAccountId(): string;
export declare function bindingUrl(base: string | URL, account?: string): string;
export declare function withAccount<T extends object>(ai: T, account: string): T;

export type Surface = "native" | "chat" | "embeddings" | "responses" | "compat_chat" | "binding";

/** Which calls a stub or fault applies to. */
export interface ScopeSpec {
  model?: string;
  surface?: Surface;
  account?: string;
  body?: Record<string, unknown>;
  prompt?: string;
}

export interface AnswerSpec {
  text?: string;
  result?: unknown;
  error?: string | number;
  finish_reason?: "stop" | "length";
}

export interface StubSpec extends ScopeSpec, AnswerSpec {
  name?: string;
  results?: AnswerSpec[];
  times?: number;
}

export interface FaultSpec extends ScopeSpec {
  name?: string;
  kind?: string;
  error?: string | number;
  nth?: number;
  every?: number;
  probability?: number;
  seed?: number;
  times?: number;
  latency_ms?: number | Record<string, number>;
  delay_ms?: number;
  after_events?: number;
}

export interface LoggedRequest {
  id: number;
  time: string;
  method: string;
  path: string;
  surface: string | null;
  account: string | null;
  model: string | null;
  request_id: string | null;
  body: unknown;
  status: number;
  error_code: number | null;
  neurons: number;
  latency_ms: number;
  stream: boolean;
  stubbed: boolean;
  faulted: boolean;
  cut: boolean;
  stub_id: string | null;
  fault_ids: string[];
  source: string | null;
  response: unknown;
}

export interface RequestFilter {
  model?: string;
  surface?: Surface;
  status?: string | number;
  account?: string;
  limit?: number;
}

export interface ModelUsage {
  model: string;
  requests: number;
  errors: number;
  neurons: number;
  [key: string]: unknown;
}

export interface UsageReport {
  account: string | null;
  day: string;
  plan: "free" | "paid";
  daily_neurons: number;
  models: ModelUsage[];
  requests: number;
  errors: number;
  refused: number;
  neurons: number;
  dollars: number;
  estimated: boolean;
  free_allowance_left: number;
  overage_neurons: number;
  overage_dollars: number;
  [key: string]: unknown;
}

export interface Health {
  status: "ok";
  mode: string;
  version: string;
  binding_url: string;
  [key: string]: unknown;
}

export declare class EmulatorError extends Error {
  status: number;
  body: unknown;
}

export declare class EmulatorClient {
  constructor(url: string | URL, options?: { token?: string });
  readonly url: string;
  readonly token?: string;
  /** Miniflare's `ai.remoteProxyConnectionString` for the default account. */
  readonly bindingUrl: string;
  health(): Promise<Health>;
  stub(spec: StubSpec): Promise<Record<string, unknown>>;
  fault(spec: FaultSpec): Promise<Record<string, unknown>>;
  stubs(account?: string): Promise<Record<string, unknown>[]>;
  faults(account?: string): Promise<Record<string, unknown>[]>;
  clearStubs(): Promise<unknown>;
  clearFaults(): Promise<unknown>;
  requests(filter?: RequestFilter): Promise<LoggedRequest[]>;
  usage(filter?: { account?: string; day?: string }): Promise<UsageReport>;
  reset(account?: string): Promise<unknown>;
  /** A per-test scope with an account of its own (random unless given). */
  scope(account?: string): EmulatorScope;
}

export declare class EmulatorScope {
  constructor(client: EmulatorClient, account: string);
  readonly client: EmulatorClient;
  readonly account: string;
  readonly bindingUrl: string;
  readonly restUrl: string;
  wrap<T extends object>(ai: T): T;
  stub(spec: StubSpec): Promise<Record<string, unknown>>;
  fault(spec: FaultSpec): Promise<Record<string, unknown>>;
  requests(filter?: Omit<RequestFilter, "account">): Promise<LoggedRequest[]>;
  usage(filter?: { day?: string }): Promise<UsageReport>;
  reset(): Promise<unknown>;
}
