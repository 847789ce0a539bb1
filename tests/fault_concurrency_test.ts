/**
 * Concurrency against real `image-agent` processes: two runs started
 * together, a restore asked for while a run is cleaning that very order,
 * and the shop's application changing statuses and images meanwhile.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  assertSafe,
  assertSameEnd,
  localCopies,
  makePlannedShop,
  planOrders,
  sleep,
  startCli,
  withSeed,
} from "./fakes/fault_kit.ts";
import { exists, noise, runCli } from "./helpers.ts";

const CONFIG = { cleanup: { batchSize: 16 } };

Deno.test(
  "two runs started together: never both working; the one that waits exits 3 naming the holder, and the end is that of one run",
  async () => {
    await withSeed("two runs", async (seed) => {
      const plan = planOrders(150, seed);
      const calm = await makePlannedShop(plan, { config: CONFIG });
      const hurt = await makePlannedShop(plan, { config: CONFIG });
      try {
        assert.equal(
          (await runCli(["run", "--config", calm.configPath])).code,
          0,
        );
        const a = startCli(["run", "--config", hurt.configPath]);
        const b = startCli(["run", "--config", hurt.configPath]);
        const [ra, rb] = await Promise.all([a.done, b.done]);
        const codes = [ra.code, rb.code].sort();
        assert.ok(
          codes[0] === 0 && (codes[1] === 3 || codes[1] === 0),
          `exit codes ${codes}\n${ra.stderr}\n${rb.stderr}`,
        );
        if (codes[1] === 3) {
          const [blocked, winner] = ra.code === 3 ? [ra, b] : [rb, a];
          assert.match(
            blocked.stderr,
            new RegExp(`process ${winner.child.pid} on .* holds the lock`),
          );
          assert.doesNotMatch(blocked.stderr, /backed up|deleted/);
        }
        // The runs recorded in the ledger never overlap.
        const db = new DatabaseSync(join(hurt.stateDir, "ledger.db"), {
          readOnly: true,
        });
        const runs = db.prepare(
          `SELECT started_at, finished_at FROM runs ORDER BY id`,
        ).all();
        db.close();
        for (let i = 1; i < runs.length; i++) {
          assert.ok(
            String(runs[i].started_at) >= String(runs[i - 1].finished_at),
            "two runs overlapped",
          );
        }
        await assertSafe(hurt, plan, localCopies(hurt), "two runs");
        await assertSameEnd(hurt, calm, "two runs");
      } finally {
        await calm.close();
        await hurt.close();
      }
    });
  },
);

Deno.test(
  "a run started while another is working exits 3 naming the holder, and touches nothing",
  async () => {
    const plan = planOrders(40, 11);
    const shop = await makePlannedShop(plan, { config: CONFIG });
    try {
      // Keep the first run busy: it waits for the ledger, which this test
      // holds, while it holds the run lock.
      assert.equal(
        (await runCli(["status", "--config", shop.configPath])).code,
        0,
      );
      const ledger = new DatabaseSync(join(shop.stateDir, "ledger.db"));
      ledger.exec("BEGIN IMMEDIATE");
      const first = startCli(["run", "--config", shop.configPath]);
      const holderFile = join(shop.stateDir, "run.lock.json");
      for (let i = 0; i < 200 && !(await exists(holderFile)); i++) {
        await sleep(50);
      }
      const second = await runCli(["run", "--config", shop.configPath]);
      ledger.exec("ROLLBACK");
      ledger.close();
      assert.equal(second.code, 3, second.stderr);
      assert.match(
        second.stderr,
        new RegExp(
          `process ${first.child.pid} on .* \\('run', since .*\\) holds the lock`,
        ),
      );
      assert.doesNotMatch(second.stderr, /backed up|deleted/);
      const r = await first.done;
      assert.equal(r.code, 0, r.stderr);
      await assertSafe(shop, plan, localCopies(shop), "after both");
    } finally {
      await shop.close();
    }
  },
);

Deno.test(
  "restore asked for while a run is cleaning that order waits for the run, then brings the image back, and the next run keeps it",
  async () => {
    await withSeed("restore during run", async (seed) => {
      const plan = planOrders(150, seed);
      const shop = await makePlannedShop(plan, { config: CONFIG });
      try {
        const run = startCli(["run", "--config", shop.configPath]);
        const seen = /order (P-\d+): backed up/;
        assert.ok(await run.waitFor(seen));
        const orderNo = seen.exec(run.text())![1];
        const order = plan.orders.find((o) => o.orderNo === orderNo)!;
        const restore = startCli([
          "restore",
          orderNo,
          "--config",
          shop.configPath,
        ]);
        const [r, back] = await Promise.all([run.done, restore.done]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(back.code, 0, back.stderr);
        assert.match(back.stderr, new RegExp(`order ${orderNo}: restored`));
        const file = join(shop.root, order.image!);
        assert.deepEqual(
          await Deno.readFile(file),
          plan.content.get(order.key),
        );
        const row = (await shop.fixture.orders()).find((o) =>
          o.orderNo === orderNo
        )!;
        assert.equal(row.image, order.image);
        const next = await runCli(["run", "--config", shop.configPath]);
        assert.equal(next.code, 0, next.stderr);
        assert.deepEqual(
          await Deno.readFile(file),
          plan.content.get(order.key),
        );
        await assertSafe(shop, plan, localCopies(shop), "after restore");
      } finally {
        await shop.close();
      }
    });
  },
);

Deno.test(
  "the shop's application changing statuses and replacing images while the agent works: no image is deleted unless its latest bytes have a copy",
  async () => {
    await withSeed("shop app busy", async (seed, random) => {
      const plan = planOrders(200, seed);
      const shop = await makePlannedShop(plan, { config: CONFIG });
      try {
        const run = startCli(["run", "--config", shop.configPath]);
        await run.waitFor(/run started/);
        const app = new DatabaseSync(join(shop.dir, "shop.db"));
        app.exec("PRAGMA busy_timeout = 5000");
        const statuses = ["shipped", "processing", "refunded", "pending"];
        let finished = false;
        run.done.then(() => (finished = true));
        let changes = 0;
        while (!finished) {
          const o = plan.orders[Math.floor(random() * plan.orders.length)];
          if (random() < 0.5) {
            app.prepare(`UPDATE orders SET status = ? WHERE id = ?`).run(
              statuses[Math.floor(random() * statuses.length)],
              o.key,
            );
          } else if (plan.content.has(o.key)) {
            // The app replaces the image the way editors do: a new file
            // renamed over the old one.
            const bytes = noise(
              100 + Math.floor(random() * 5000),
              seed + changes,
            );
            const path = join(shop.root, o.image!);
            const column = app.prepare(
              `SELECT hd_image FROM orders WHERE id = ?`,
            )
              .get(o.key);
            if (!column?.hd_image) continue; // cleaned: the app leaves it
            try {
              await Deno.writeFile(path + ".new", bytes);
              plan.content.set(o.key, bytes);
              await Deno.rename(path + ".new", path);
            } catch {
              // The agent had already cleaned it: the app would re-upload.
              await Deno.remove(path + ".new").catch(() => {});
            }
          }
          changes++;
          await sleep(random() * 5);
        }
        app.close();
        const r = await run.done;
        assert.ok(r.code === 0 || r.code === 1, r.stderr);
        assert.doesNotMatch(r.stderr, /Unexpected internal error/);
        // A replaced image whose copy is older must not be gone; a rerun
        // backs up the new bytes.
        await assertSafe(
          shop,
          plan,
          localCopies(shop),
          `after ${changes} changes`,
          { rewritten: true },
        );
        const again = await runCli(["run", "--config", shop.configPath]);
        assert.equal(again.code, 0, again.stderr);
        await assertSafe(shop, plan, localCopies(shop), "after the rerun", {
          rewritten: true,
        });
      } finally {
        await shop.close();
      }
    });
  },
);
