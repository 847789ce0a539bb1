/** `image-agent daemon` driving the real run command, recorded as "daemon". */

import assert from "node:assert/strict";
import { join } from "node:path";
import { daemonCommand } from "../src/cli/schedule.ts";
import type { Deps } from "../src/cli/command.ts";
import { ManualClock } from "../src/clock.ts";
import { Ledger } from "../src/ledger/ledger.ts";
import { memoryLogger } from "../src/log.ts";
import { shopBackends } from "./fakes/shop_fixture.ts";
import { exists, makeShop, noise } from "./helpers.ts";

Deno.test("daemon runs the pass at the configured local time and records it with trigger daemon", async () => {
  const shop = await makeShop(shopBackends()[0], {
    orders: [{
      key: 1,
      orderNo: "D-1",
      status: "shipped",
      image: "d.png",
      shippedAt: "2026-01-01 00:00:00",
      content: noise(1000, 3),
    }],
  });
  try {
    // 02:00 in Asia/Shanghai (the test config's zone) is 18:00 UTC.
    const clock = new ManualClock("2026-06-01T17:59:30Z");
    const controller = new AbortController();
    let runsSeen = 0;
    const sleeps: string[] = [];
    const stopAfterFirstRun = {
      now: () => clock.now(),
      sleep: (ms: number, signal?: AbortSignal) => {
        sleeps.push(clock.now().toISOString());
        const ledger = Ledger.open(shop.stateDir);
        runsSeen = ledger.runs().length;
        ledger.close();
        if (runsSeen > 0) controller.abort();
        return clock.sleep(ms, signal);
      },
    };
    const log = memoryLogger();
    const out: string[] = [];
    const deps: Deps = {
      clock: stopAfterFirstRun,
      log,
      stdout: (t) => out.push(t),
      env: (n) => Deno.env.get(n),
      interactive: false,
      prompt: () => null,
      signal: controller.signal,
      trigger: "manual",
      execPath: Deno.execPath(),
      fetch: globalThis.fetch,
    };
    const code = await daemonCommand.run(deps, ["--config", shop.configPath]);
    assert.equal(code, 0);
    assert.equal(sleeps[0], "2026-06-01T17:59:30.000Z");
    const ledger = Ledger.open(shop.stateDir);
    const runs = ledger.runs();
    ledger.close();
    assert.equal(runs.length, 1);
    assert.equal(runs[0].trigger, "daemon");
    assert.equal(runs[0].command, "run");
    assert.equal(runs[0].cleaned, 1);
    assert.equal(await exists(join(shop.root, "d.png")), false);
    assert.ok(
      log.lines.some((l) =>
        l.includes("next run at 2026-06-02 02:00 (Asia/Shanghai")
      ),
      log.lines.join("\n"),
    );
  } finally {
    await shop.close();
  }
});
