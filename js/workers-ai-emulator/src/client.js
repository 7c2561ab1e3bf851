// The control-plane client: runs anywhere `fetch` does (Node, workerd, vitest-pool-workers tests).
// No runtime dependencies. The Node-only parts (starting a `serve` process) are in index.js.

export const ACCOUNT_HEADER = "x-workers-ai-emulator-account";
export const DEFAULT_ACCOUNT = "0123456789abcdef0123456789abcdef";

/** A fresh 32-hex account id: one per test keeps its stubs, faults, requests and usage apart. */
export function randomAccountId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The `remoteProxyConnectionString` for Miniflare's AI binding (the default account without one). */
export function bindingUrl(base, account) {
  const root = String(base).replace(/\/+$/, "");
  return account ? `${root}/binding/${account}` : `${root}/`;
}

/**
 * `env.AI` charged to `account`: every `run` carries the account in `extraHeaders`, for tests that
 * cannot change the binding's connection string (vitest-pool-workers tests that pass `env` on).
 */
export function withAccount(ai, account) {
  return new Proxy(ai, {
    get(target, prop) {
      if (prop === "run") {
        return (model, inputs, options = {}) =>
          target.run(model, inputs, {
            ...options,
            extraHeaders: { ...(options.extraHeaders ?? {}), [ACCOUNT_HEADER]: account },
          });
      }
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

export class EmulatorError extends Error {
  constructor(message, status, body) {
    super(message);
    this.name = "EmulatorError";
    this.status = status;
    this.body = body;
  }
}

/** The emulator's control plane (`/__emulator__/`) at `url`. */
export class EmulatorClient {
  constructor(url, { token } = {}) {
    this.url = String(url).replace(/\/+$/, "");
    this.token = token;
  }

  /** The connection string for Miniflare's AI binding (the banner's account). */
  get bindingUrl() {
    return bindingUrl(this.url);
  }

  async #call(method, path, body) {
    const headers = { "content-type": "application/json" };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const response = await fetch(`${this.url}/__emulator__${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const parsed = text ? JSON.parse(text) : null;
    if (!response.ok) {
      throw new EmulatorError(`${method} ${path}: ${parsed?.error ?? text}`, response.status, parsed);
    }
    return parsed;
  }

  health() {
    return this.#call("GET", "/health");
  }

  /** Add a stub ({model, surface, account, body, prompt, text | result | error | results, times, name}). */
  stub(spec) {
    return this.#call("POST", "/stubs", spec);
  }

  /** Add a fault ({kind | error, model, surface, account, nth, every, probability, times, latency_ms …}). */
  fault(spec) {
    return this.#call("POST", "/faults", spec);
  }

  async stubs(account) {
    return (await this.#call("GET", `/stubs${query({ account })}`)).stubs;
  }

  async faults(account) {
    return (await this.#call("GET", `/faults${query({ account })}`)).faults;
  }

  clearStubs() {
    return this.#call("DELETE", "/stubs");
  }

  clearFaults() {
    return this.#call("DELETE", "/faults");
  }

  /** Logged requests, oldest first; filter by {model, surface, status, account, limit}. */
  async requests(filter = {}) {
    return (await this.#call("GET", `/requests${query(filter)}`)).requests;
  }

  /** One UTC day's neuron usage ({account, day}). */
  usage(filter = {}) {
    return this.#call("GET", `/usage${query(filter)}`);
  }

  /** Forget usage, requests, stubs and faults: all of them, or one account's. */
  reset(account) {
    return this.#call("POST", `/reset${query({ account })}`);
  }

  /** A per-test scope: its own account, binding connection string, stubs, faults, requests and usage. */
  scope(account = randomAccountId()) {
    return new EmulatorScope(this, account);
  }
}

/** Everything one test needs, bound to an account of its own. */
export class EmulatorScope {
  constructor(client, account) {
    this.client = client;
    this.account = account;
  }

  /** Give this to Miniflare as `ai.remoteProxyConnectionString`. */
  get bindingUrl() {
    return bindingUrl(this.client.url, this.account);
  }

  /** The REST base URL (`…/client/v4/accounts/<account>/ai`) for code that calls the REST API. */
  get restUrl() {
    return `${this.client.url}/client/v4/accounts/${this.account}/ai`;
  }

  /** `env.AI` charged to this scope's account (see `withAccount`). */
  wrap(ai) {
    return withAccount(ai, this.account);
  }

  stub(spec) {
    return this.client.stub({ ...spec, account: this.account });
  }

  fault(spec) {
    return this.client.fault({ ...spec, account: this.account });
  }

  requests(filter = {}) {
    return this.client.requests({ ...filter, account: this.account });
  }

  usage(filter = {}) {
    return this.client.usage({ ...filter, account: this.account });
  }

  reset() {
    return this.client.reset(this.account);
  }
}

function query(params) {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== null);
  return entries.length ? `?${new URLSearchParams(entries.map(([k, v]) => [k, String(v)]))}` : "";
}
