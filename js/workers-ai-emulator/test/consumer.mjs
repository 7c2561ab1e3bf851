// Run by tests/test_js_helper.py from a project that installed the packed tarball: every helper
// call against a `serve` process the helper starts. Prints one JSON line of what it saw.
import { Emulator, randomAccountId, bindingUrl, DEFAULT_ACCOUNT } from "workers-ai-emulator";
import { EmulatorClient, withAccount } from "workers-ai-emulator/client";

const LLAMA = "@cf/meta/llama-3.1-8b-instruct";
const emulator = await Emulator.start({ seed: 7, stderr: "ignore" });
try {
  const health = await emulator.health();
  const a = emulator.scope();
  const b = emulator.scope(randomAccountId());
  await a.stub({ model: LLAMA, text: "stubbed for a" });
  await b.fault({ model: LLAMA, kind: "capacity" });
  const run = async (scope) => {
    const response = await fetch(`${scope.restUrl}/run/${LLAMA}`, {
      method: "POST",
      headers: { authorization: "Bearer any", "content-type": "application/json" },
      body: JSON.stringify({ prompt: "Hi" }),
    });
    return { status: response.status, body: await response.json() };
  };
  const ra = await run(a);
  const rb = await run(b);
  const before = { a: (await a.usage()).neurons, aRequests: (await a.requests()).length, bStubs: (await b.client.stubs(b.account)).length };
  await a.reset();
  const after = { a: (await a.usage()).neurons, aRequests: (await a.requests()).length, bFaults: (await b.client.faults(b.account)).length };
  const attached = await Emulator.attach(emulator.url);
  const client = new EmulatorClient(emulator.url);
  const wrapped = withAccount({ run: (m, i, o) => o, lastRequestId: "x" }, a.account);
  console.log(JSON.stringify({
    health,
    bindingUrl: emulator.bindingUrl,
    scopeBindingUrl: a.bindingUrl,
    helperBindingUrl: bindingUrl(emulator.url, a.account),
    defaultAccount: DEFAULT_ACCOUNT,
    accounts: [a.account, b.account],
    ra, rb, before, after,
    attachedHealth: (await attached.health()).status,
    clientUrl: client.url,
    wrappedOptions: await wrapped.run("m", {}, { returnRawResponse: true }),
    wrappedLastRequestId: wrapped.lastRequestId,
  }));
} finally {
  await emulator.stop();
}
