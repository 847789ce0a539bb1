/**
 * Crashes: a real `image-agent run` over a few hundred orders, killed with
 * SIGKILL at random moments many times, then run to completion; and stopped
 * with SIGTERM. Seeded; the seed is printed on failure (FAULT_SEED=N
 * replays it).
 */

import assert from "node:assert/strict";
import {
  assertSafe,
  assertSameEnd,
  filesOf,
  localCopies,
  makePlannedShop,
  planOrders,
  runStatuses,
  sleep,
  startCli,
  withSeed,
} from "./fakes/fault_kit.ts";
import { runCli, type TestShop } from "./helpers.ts";
import { FakeBaidu } from "./fakes/baidu_server.ts";

const ORDERS = 300;
const KILLS = 25;
/** Small pages: more commits, so more moments between two steps. */
const CONFIG = { cleanup: { batchSize: 16 } };

Deno.test(
  "run killed with SIGKILL 25 times: no image lost at any moment, and the rerun ends where an undisturbed run ends",
  async () => {
    await withSeed("SIGKILL crash loop", async (seed, random) => {
      const plan = planOrders(ORDERS, seed);
      const calm = await makePlannedShop(plan, { config: CONFIG });
      const hurt = await makePlannedShop(plan, { config: CONFIG });
      try {
        const started = Date.now();
        const c = await runCli(["run", "--config", calm.configPath]);
        assert.equal(c.code, 0, c.stderr);
        // The window in which a kill lands mid-work, after start-up: a
        // small part of a whole run, so that many kills are needed to get
        // through it.
        const window = Math.max(60, (Date.now() - started) / 16);
        const done = await cleanedKeys(calm);

        let kills = 0;
        const t0 = Date.now();
        for (let attempt = 0; kills < KILLS && attempt < KILLS * 3; attempt++) {
          // Only a kill of a run that still has work to do counts.
          if (await workLeft(hurt, done) === 0) break;
          const p = startCli(["run", "--config", hurt.configPath]);
          // One kill in five lands during start-up (lock, interrupted clears).
          if (random() >= 0.2) await p.waitFor(/run started/);
          await sleep(random() * window);
          let killed = false;
          try {
            p.child.kill("SIGKILL");
            killed = true;
          } catch { /* it had already finished */ }
          const r = await p.done;
          if (Deno.env.get("FAULT_TRACE")) {
            console.log(attempt, kills, Date.now() - t0, r.code, r.signal);
          }
          if (killed && r.signal === "SIGKILL") kills++;
          else assert.equal(r.code, 0, r.stderr);
          await assertSafe(
            hurt,
            plan,
            localCopies(hurt),
            `after kill ${kills} (attempt ${attempt})`,
          );
        }
        assert.ok(kills >= 15, `only ${kills} kills landed`);

        const last = await runCli(["run", "--config", hurt.configPath]);
        assert.equal(last.code, 0, last.stderr);
        await assertSafe(hurt, plan, localCopies(hurt), "after the rerun");
        await assertSameEnd(hurt, calm, "after the rerun");
        const statuses = runStatuses(hurt);
        assert.ok(!statuses.includes("running"), statuses.join(","));
        assert.equal(statuses[statuses.length - 1], "ok");
      } finally {
        await calm.close();
        await hurt.close();
      }
    });
  },
);

Deno.test(
  "run stopped with SIGTERM finishes the order in hand, says so, exits 1, and the next run completes",
  async () => {
    await withSeed("SIGTERM", async (seed, random) => {
      const plan = planOrders(ORDERS, seed);
      const calm = await makePlannedShop(plan, { config: CONFIG });
      const hurt = await makePlannedShop(plan, { config: CONFIG });
      try {
        const c = await runCli(["run", "--config", calm.configPath]);
        assert.equal(c.code, 0, c.stderr);

        const p = startCli(["run", "--config", hurt.configPath]);
        // The first page is backed up; a few hundred orders are still to go.
        assert.ok(await p.waitFor(/order P-\d+: backed up/));
        await sleep(random() * 10);
        p.child.kill("SIGTERM");
        const r = await p.done;
        assert.equal(r.signal, null, "the agent must exit by itself");
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /Stopping: finishing the order in hand/);
        assert.match(
          r.stderr,
          /Stopped early on request; the next run continues/,
        );
        assert.doesNotMatch(r.stderr, /Unexpected internal error/);
        assert.equal(runStatuses(hurt).at(-1), "interrupted");
        assert.ok(
          await workLeft(hurt, await cleanedKeys(calm)) > 0,
          "stopped early",
        );
        await assertNoTemps(hurt);
        await assertSafe(hurt, plan, localCopies(hurt), "after SIGTERM");

        const again = await runCli(["run", "--config", hurt.configPath]);
        assert.equal(again.code, 0, again.stderr);
        await assertSameEnd(hurt, calm, "after the rerun");
      } finally {
        await calm.close();
        await hurt.close();
      }
    });
  },
);

/** Keys of the orders whose image column an undisturbed run emptied. */
async function cleanedKeys(calm: TestShop): Promise<Set<number>> {
  return new Set(
    (await calm.fixture.orders()).filter((o) => o.image === null).map((o) =>
      o.key
    ),
  );
}

/** Orders an undisturbed run cleaned that still have their column here. */
async function workLeft(shop: TestShop, cleaned: Set<number>): Promise<number> {
  return (await shop.fixture.orders()).filter((o) =>
    cleaned.has(o.key) && o.image !== null
  ).length;
}

/** No temp file of a copy is left in the backup folder. */
async function assertNoTemps(shop: TestShop): Promise<void> {
  const temps = [...(await filesOf(shop.backupDir)).keys()].filter((k) =>
    /(^|\/)\.[^/]*\.partial-/.test(k)
  );
  assert.deepEqual(temps, [], "temp files left in the backup folder");
}

/** A shop backing up to a fake Baidu Netdisk on loopback, logged in. */
async function baiduShop(plan: ReturnType<typeof planOrders>) {
  const fake = await FakeBaidu.start({ codes: ["good-code"] });
  const shop = await makePlannedShop(plan, {
    config: {
      ...CONFIG,
      backup: {
        target: "baidu",
        concurrency: 2,
        baidu: {
          appKey: fake.appKey,
          secretKey: fake.secretKey,
          folder: BAIDU_FOLDER,
          endpoints: fake.endpoints,
        },
      },
    },
  });
  const login = await runCli([
    "baidu",
    "login",
    "--code",
    "good-code",
    "--config",
    shop.configPath,
  ]);
  assert.equal(login.code, 0, login.stderr);
  return { fake, shop };
}

const BAIDU_FOLDER = "/apps/image-agent/hd";

/** No token, key or signed address in what a process printed. */
function assertNoSecret(fake: FakeBaidu, text: string, where: string) {
  for (
    const s of [
      ...fake.issued,
      fake.secretKey,
      "SIGNED-SECRET",
      "CDN-SIGNATURE",
      "access_token=",
    ]
  ) {
    assert.ok(!text.includes(s), `${where}: "${s}" reached the log`);
  }
}

Deno.test(
  "run against Baidu Netdisk killed with SIGKILL 12 times: no image lost, no secret logged, and the rerun ends where an undisturbed run ends",
  async () => {
    await withSeed("Baidu SIGKILL crash loop", async (seed, random) => {
      const plan = planOrders(80, seed);
      const calm = await baiduShop(plan);
      const hurt = await baiduShop(plan);
      const fromFake = (p: string) =>
        Promise.resolve(hurt.fake.files.get(p)?.bytes ?? null);
      try {
        const started = Date.now();
        const c = await runCli(["run", "--config", calm.shop.configPath]);
        assert.equal(c.code, 0, c.stderr);
        const window = Math.max(100, (Date.now() - started) / 6);
        let kills = 0;
        for (let attempt = 0; kills < 12 && attempt < 36; attempt++) {
          const p = startCli(["run", "-v", "--config", hurt.shop.configPath]);
          await p.waitFor(/run started/);
          await sleep(random() * window);
          let killed = false;
          try {
            p.child.kill("SIGKILL");
            killed = true;
          } catch { /* already finished */ }
          const r = await p.done;
          if (killed && r.signal === "SIGKILL") kills++;
          else assert.equal(r.code, 0, r.stderr);
          assertNoSecret(hurt.fake, r.stderr, `attempt ${attempt}`);
          await assertSafe(hurt.shop, plan, fromFake, `after kill ${kills}`);
        }
        assert.ok(kills >= 8, `only ${kills} kills landed`);
        const last = await runCli([
          "run",
          "-v",
          "--config",
          hurt.shop.configPath,
        ]);
        assert.equal(last.code, 0, last.stderr);
        assertNoSecret(hurt.fake, last.stderr, "the rerun");
        await assertSafe(hurt.shop, plan, fromFake, "after the rerun");
        await assertSameEnd(hurt.shop, calm.shop, "after the rerun");
        const remote = (f: FakeBaidu) =>
          [...f.files.values()].map((x) => [x.path, x.md5]).sort();
        assert.deepEqual(remote(hurt.fake), remote(calm.fake));
      } finally {
        for (const x of [calm, hurt]) {
          await x.fake.close();
          await x.shop.close();
        }
      }
    });
  },
);

Deno.test(
  "run against Baidu Netdisk stopped with SIGTERM while it waits on the space check stops cleanly, records the run as interrupted, and the next run completes",
  async () => {
    const plan = planOrders(20, 7);
    const b = await baiduShop(plan);
    try {
      b.fake.fail("quota", { delayMs: 3000 });
      const p = startCli(["run", "--config", b.shop.configPath]);
      assert.ok(await p.waitFor(/run started/));
      await sleep(300);
      p.child.kill("SIGTERM");
      const r = await p.done;
      assert.equal(r.signal, null, "the agent must exit by itself");
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /Stopping: finishing the order in hand/);
      assert.match(r.stderr, /Stopped early on request/);
      assert.doesNotMatch(r.stderr, /Unexpected internal error/);
      assert.equal(runStatuses(b.shop).at(-1), "interrupted");
      const again = await runCli(["run", "--config", b.shop.configPath]);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(runStatuses(b.shop).at(-1), "ok");
    } finally {
      await b.fake.close();
      await b.shop.close();
    }
  },
);
