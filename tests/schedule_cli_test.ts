/**
 * `image-agent schedule export` as an operator runs it: the real CLI as a
 * subprocess, its exit code and what it prints.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { shopBackends } from "./fakes/shop_fixture.ts";
import { makeShop, runCli } from "./helpers.ts";

Deno.test("schedule export refuses an unknown --machine-zone with exit 2 and no stack", async () => {
  const shop = await makeShop(shopBackends()[0], { orders: [] });
  try {
    const r = await runCli([
      "schedule",
      "export",
      "--format",
      "cron",
      "--out",
      join(shop.dir, "out"),
      "--machine-zone",
      "Foo/Bar",
      "--config",
      shop.configPath,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /Unknown --machine-zone "Foo\/Bar": not an IANA time zone/,
    );
    assert.doesNotMatch(r.stderr, /internal error|^ +at /m);
  } finally {
    await shop.close();
  }
});

Deno.test("schedule export --format cron prints how to merge it into a crontab", async () => {
  const shop = await makeShop(shopBackends()[0], { orders: [] });
  try {
    const out = join(shop.dir, "out");
    const r = await runCli([
      "schedule",
      "export",
      "--format",
      "cron",
      "--out",
      out,
      "--machine-zone",
      "Asia/Shanghai",
      "--config",
      shop.configPath,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /keeping the other lines:\n {2}\(crontab -l .*\| crontab -\n/,
    );
    assert.ok(r.stdout.includes(join(out, "image-agent.cron")), r.stdout);
  } finally {
    await shop.close();
  }
});
