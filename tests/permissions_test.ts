/**
 * The compiled binary carries only the permissions in scripts/compile.ts;
 * the everyday commands must work with exactly those and no prompt.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { PERMISSIONS } from "../scripts/compile.ts";
import { shopBackends } from "./fakes/shop_fixture.ts";
import { daysAgo, exists, MAIN, makeShop, noise } from "./helpers.ts";

async function agent(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...PERMISSIONS,
      "--unstable-cron",
      "--no-prompt",
      MAIN,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("migrate, run, restore, status and schedule export work with only the binary's permissions", async () => {
  const content = noise(3000, 5);
  const shop = await makeShop(shopBackends()[0], {
    migrate: false,
    orders: [{
      key: 1,
      orderNo: "P-1",
      status: "shipped",
      image: "p.png",
      content,
    }],
  });
  try {
    const m = await agent(["migrate", "--config", shop.configPath]);
    assert.equal(m.code, 0, m.stderr);
    await shop.fixture.insertOrders([
      {
        key: 2,
        orderNo: "P-2",
        status: "shipped",
        image: "q.png",
        shippedAt: daysAgo(30, new Date()),
      },
    ]);
    await Deno.writeFile(join(shop.root, "q.png"), content);
    const r = await agent(["run", "--json", "--config", shop.configPath]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).cleaned, 1);
    assert.equal(await exists(join(shop.root, "q.png")), false);
    const back = await agent(["restore", "P-2", "--config", shop.configPath]);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual(await Deno.readFile(join(shop.root, "q.png")), content);
    const s = await agent(["status", "--json", "--config", shop.configPath]);
    assert.equal(s.code, 0, s.stderr);
    assert.ok(JSON.parse(s.stdout).schedule.nextRun);
    const out = join(shop.dir, "units");
    const e = await agent([
      "schedule",
      "export",
      "--format",
      "systemd",
      "--out",
      out,
      "--config",
      shop.configPath,
    ]);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(await exists(join(out, "image-agent.timer")), true);
    for (const x of [m, r, back, s, e]) {
      assert.doesNotMatch(
        x.stderr,
        /NotCapable|PermissionDenied|Requires .* access/,
      );
    }
  } finally {
    await shop.close();
  }
});

Deno.test("daemon starts on Deno.cron and stops on SIGTERM with only the binary's permissions", async () => {
  const shop = await makeShop(shopBackends()[0], {
    orders: [],
    config: { schedule: { cron: "0 0 29 2 *", timezone: "UTC" } },
  });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...PERMISSIONS,
      "--unstable-cron",
      "--no-prompt",
      MAIN,
      "daemon",
      "--config",
      shop.configPath,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream())
    .getReader();
  let seen = "";
  try {
    while (!/next run at /.test(seen)) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += value;
    }
    assert.match(seen, /registered with Deno\.cron/);
    child.kill("SIGTERM");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += value;
    }
    assert.equal((await child.status).code, 0, seen);
    assert.doesNotMatch(seen, /NotCapable|PermissionDenied|Requires .* access/);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    await shop.close();
  }
});
