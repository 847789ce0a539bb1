/**
 * The Shop contract, run over every backend shopBackends() offers: SQLite
 * always, PostgreSQL and MySQL/MariaDB when scripts/test-db-servers.sh has
 * started them and the URLs are exported. The fixture plays the shop's
 * application (its own connection, in a non-UTC zone on the servers); the
 * shop under test is opened from a config, as the CLI opens it.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Config, parseConfig } from "../src/config.ts";
import { AgentError, DatabaseBusyError } from "../src/errors.ts";
import { openShop } from "../src/shop/open.ts";
import type { Shop } from "../src/shop/shop.ts";
import {
  type OrderRowSpec,
  type OrderTableNames,
  type ShopBackend,
  shopBackends,
  type ShopFixture,
} from "./fakes/shop_fixture.ts";

const NAMES: OrderTableNames = {
  table: "orders",
  key: "id",
  orderNo: "order_no",
  status: "status",
  hdImage: "hd_image",
  shippedAt: "shipped_at",
};

/** Reserved words and mixed case: valid plain identifiers that need quoting. */
const ODD_NAMES: OrderTableNames = {
  table: "Order",
  key: "select",
  orderNo: "OrderNo",
  status: "group",
  hdImage: "desc",
  shippedAt: "from",
};

const SHIPPED = ["shipped", "processing"];

interface Env {
  fx: ShopFixture;
  dir: string;
  config: Config;
  open(): Promise<Shop>;
}

interface EnvOptions {
  names?: OrderTableNames;
  withShippedAt?: boolean;
  rows?: OrderRowSpec[];
  statuses?: string[];
  busyTimeoutMs?: number;
}

function configFor(
  fx: ShopFixture,
  dir: string,
  names: OrderTableNames,
  statuses: string[],
  busyTimeoutMs?: number,
): Config {
  return parseConfig(
    {
      database: { ...fx.database, busyTimeoutMs },
      orders: { ...names, shippedStatuses: statuses },
      images: { root: dir },
      backup: { target: "none" },
      state: { dir },
    },
    join(dir, "image-agent.json"),
    { checkPaths: false },
  );
}

/** A fresh shop on `backend`; every shop opened through it is closed after. */
async function withEnv(
  backend: ShopBackend,
  options: EnvOptions,
  fn: (env: Env) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ia-shop-" });
  const shops: Shop[] = [];
  let fx: ShopFixture | undefined;
  try {
    fx = await backend.create(dir);
    const names = options.names ?? NAMES;
    await fx.createOrders(names, options.withShippedAt ?? false);
    if (options.rows) await fx.insertOrders(options.rows);
    const config = configFor(
      fx,
      dir,
      names,
      options.statuses ?? SHIPPED,
      options.busyTimeoutMs,
    );
    await fn({
      fx,
      dir,
      config,
      open: async () => {
        const shop = await openShop(config);
        shops.push(shop);
        return shop;
      },
    });
  } finally {
    for (const s of shops) await s.close().catch(() => {});
    await fx?.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function utc(text: string): Date {
  return new Date(text.replace(" ", "T") + "Z");
}

/** Asserts that a 'YYYY-MM-DD HH:MM:SS' UTC stamp lies within [from, to]. */
function assertStampedBetween(
  stamp: string | null | undefined,
  from: number,
  to: number,
  what: string,
) {
  assert.ok(stamp, `${what}: shipped_at is empty`);
  const t = utc(stamp).getTime();
  assert.ok(
    t >= Math.floor(from / 1000) * 1000 - 1000 && t <= to + 1000,
    `${what}: shipped_at ${stamp} is not the UTC time of the change (${
      new Date(from).toISOString()
    })`,
  );
}

const rows = (
  list: [number, string, string | null, string | null][],
): OrderRowSpec[] =>
  list.map(([key, status, image, shippedAt]) => ({
    key,
    orderNo: `NO-${key}`,
    status,
    image,
    shippedAt,
  }));

for (const backend of shopBackends()) {
  const d = backend.driver;
  const test = (name: string, fn: () => Promise<void>) =>
    Deno.test({
      name: `${d}: ${name}`,
      fn,
      // The server drivers keep sockets and timers that outlive one step.
      sanitizeOps: d === "sqlite",
      sanitizeResources: d === "sqlite",
    });

  test("migrate() adds the column, trigger and index, backfills, and a second run changes nothing", async () => {
    await withEnv(backend, {
      rows: [
        { key: 1, orderNo: "A", status: "shipped", image: "a.png" },
        { key: 2, orderNo: "B", status: "paid", image: "b.png" },
        { key: 3, orderNo: "C", status: "processing", image: null },
      ],
    }, async ({ fx, open }) => {
      const shop = await open();
      assert.equal(shop.driver, d);
      assert.equal(await shop.isMigrated(), false);
      const now = new Date("2025-03-01T08:30:00Z");
      const first = await shop.migrate(now);
      assert.deepEqual(first, {
        addedColumn: true,
        installedTrigger: true,
        backfilled: 2,
        addedIndex: true,
      });
      assert.equal(await shop.isMigrated(), true);
      assert.ok((await shop.columns()).includes("shipped_at"));
      const second = await shop.migrate(new Date("2025-03-02T00:00:00Z"));
      assert.deepEqual(second, {
        addedColumn: false,
        installedTrigger: false,
        backfilled: 0,
        addedIndex: false,
      });
      const got = await fx.orders();
      assert.deepEqual(got.map((r) => r.shippedAt), [
        "2025-03-01 08:30:00",
        null,
        "2025-03-01 08:30:00",
      ]);
      // A fresh connection sees the same: nothing is left to do.
      const again = await open();
      assert.equal((await again.migrate(now)).installedTrigger, false);
    });
  });

  test("migrate() trigger stamps shipped_at in UTC when the status changes to shipped", async () => {
    await withEnv(backend, {
      rows: rows([
        [1, "paid", "a.png", null],
        [2, "paid", "b.png", null],
        [3, "shipped", "c.png", null],
      ]),
    }, async ({ fx, open }) => {
      const shop = await open();
      await shop.migrate(new Date("2025-01-01T00:00:00Z"));
      const from = Date.now();
      await fx.setStatus(1, "shipped");
      await fx.setStatus(2, "cancelled");
      await fx.setStatus(3, "processing");
      const to = Date.now();
      const got = await fx.orders();
      assertStampedBetween(got[0].shippedAt, from, to, "order 1");
      assert.equal(got[1].shippedAt, null, "a status that is not shipped");
      assert.equal(
        got[2].shippedAt,
        "2025-01-01 00:00:00",
        "an order already stamped keeps its time",
      );
      const one = await shop.findByKey("1");
      assert.equal(
        one?.shippedAt?.toISOString().slice(0, 19),
        got[0].shippedAt!.replace(" ", "T"),
      );
    });
  });

  test("migrate() trigger stamps shipped_at in UTC on insert, and keeps a given time", async () => {
    await withEnv(backend, {}, async ({ fx, open }) => {
      const shop = await open();
      await shop.migrate(new Date());
      const from = Date.now();
      await fx.insertOrders([
        { key: 1, orderNo: "A", status: "shipped", image: "a.png" },
        { key: 2, orderNo: "B", status: "paid", image: "b.png" },
        {
          key: 3,
          orderNo: "C",
          status: "shipped",
          image: "c.png",
          shippedAt: "2024-12-24 23:59:59",
        },
      ]);
      const to = Date.now();
      const got = await fx.orders();
      assertStampedBetween(got[0].shippedAt, from, to, "order 1");
      assert.equal(got[1].shippedAt, null);
      assert.equal(got[2].shippedAt, "2024-12-24 23:59:59");
    });
  });

  test("migrate() keeps a shop's own shipped_at column and its times", async () => {
    await withEnv(backend, {
      withShippedAt: true,
      rows: rows([
        [1, "shipped", "a.png", "2024-06-01 10:00:00"],
        [2, "shipped", "b.png", null],
      ]),
    }, async ({ fx, open }) => {
      const shop = await open();
      assert.equal(await shop.isMigrated(), true);
      const r = await shop.migrate(new Date("2025-01-01T00:00:00Z"));
      assert.equal(r.addedColumn, false);
      assert.equal(r.backfilled, 1);
      assert.deepEqual((await fx.orders()).map((o) => o.shippedAt), [
        "2024-06-01 10:00:00",
        "2025-01-01 00:00:00",
      ]);
    });
  });

  test("eligible() pages in key order and honours the UTC cut-off", async () => {
    await withEnv(backend, {
      withShippedAt: true,
      rows: rows([
        [2, "shipped", "2.png", "2025-01-10 12:00:00"],
        [10, "shipped", "10.png", "2025-01-01 00:00:00"],
        [3, "processing", "3.png", "2025-01-05 00:00:00"],
        [4, "paid", "4.png", "2025-01-01 00:00:00"],
        [5, "shipped", null, "2025-01-01 00:00:00"],
        [6, "shipped", "", "2025-01-01 00:00:00"],
        [7, "shipped", "7.png", "2025-01-10 12:00:01"],
        [8, "shipped", "8.png", null],
      ]),
    }, async ({ open }) => {
      const shop = await open();
      await shop.migrate(new Date("2025-01-01T00:00:00Z"));
      // migrate backfilled order 8 with 2025-01-01.
      const cut = new Date("2025-01-10T12:00:00Z");
      const all = await shop.eligible({ shippedBefore: cut, limit: 100 });
      assert.deepEqual(all.map((o) => o.key), ["2", "3", "8", "10"]);
      assert.equal(all[0].orderNo, "NO-2");
      assert.equal(all[0].image, "2.png");
      assert.equal(
        all[0].shippedAt?.toISOString(),
        "2025-01-10T12:00:00.000Z",
      );
      const page1 = await shop.eligible({ shippedBefore: cut, limit: 2 });
      assert.deepEqual(page1.map((o) => o.key), ["2", "3"]);
      const page2 = await shop.eligible({
        shippedBefore: cut,
        afterKey: "3",
        limit: 2,
      });
      assert.deepEqual(page2.map((o) => o.key), ["8", "10"]);
      const page3 = await shop.eligible({
        shippedBefore: cut,
        afterKey: "10",
        limit: 2,
      });
      assert.deepEqual(page3, []);
      const earlier = await shop.eligible({
        shippedBefore: new Date(cut.getTime() - 1000),
        limit: 100,
      });
      assert.deepEqual(earlier.map((o) => o.key), ["3", "8", "10"]);
    });
  });

  test("eligible() asks for migrate before the column exists", async () => {
    await withEnv(
      backend,
      { rows: rows([[1, "shipped", "a", null]]) },
      async ({ open }) => {
        const shop = await open();
        await assert.rejects(
          async () =>
            await shop.eligible({ shippedBefore: new Date(), limit: 10 }),
          /has no column "shipped_at" yet/,
        );
      },
    );
  });

  test("clearImages() and restoreImage() change a row only when it holds what the agent expects", async () => {
    await withEnv(backend, {
      withShippedAt: true,
      rows: rows([
        [1, "shipped", "a.png", "2025-01-01 00:00:00"],
        [2, "shipped", "b.png", "2025-01-01 00:00:00"],
        [3, "shipped", "c.png", "2025-01-01 00:00:00"],
      ]),
    }, async ({ fx, open }) => {
      const shop = await open();
      await shop.migrate(new Date());
      const cleared = await shop.clearImages([
        { key: "1", image: "a.png" },
        { key: "2", image: "old-b.png" },
        { key: "404", image: "x.png" },
      ]);
      assert.deepEqual(cleared, ["1"]);
      let got = await fx.orders();
      assert.ok(got[0].image === null || got[0].image === "");
      assert.equal(got[1].image, "b.png");
      assert.deepEqual(await shop.clearImages([]), []);

      assert.equal(await shop.restoreImage("1", "a.png"), true);
      assert.equal(await shop.restoreImage("1", "a.png"), true, "same value");
      assert.equal(await shop.restoreImage("2", "a.png"), false);
      assert.equal(await shop.restoreImage("404", "a.png"), false);
      got = await fx.orders();
      assert.deepEqual(got.map((r) => r.image), ["a.png", "b.png", "c.png"]);
      assert.deepEqual(
        (await shop.findByOrderNo("NO-3")).map((o) => o.key),
        ["3"],
      );
      assert.equal(await shop.findByKey("404"), null);
    });
  });

  test("the shop quotes reserved and mixed-case identifiers", async () => {
    await withEnv(backend, {
      names: ODD_NAMES,
      rows: rows([
        [1, "shipped", "a.png", null],
        [2, "paid", "b.png", null],
      ]),
    }, async ({ fx, open }) => {
      const shop = await open();
      const cols = await shop.columns();
      assert.deepEqual(cols, ["select", "OrderNo", "group", "desc"]);
      const r = await shop.migrate(new Date("2025-01-01T00:00:00Z"));
      assert.equal(r.backfilled, 1);
      assert.equal((await shop.migrate(new Date())).installedTrigger, false);
      const from = Date.now();
      await fx.setStatus(2, "shipped");
      assertStampedBetween(
        (await fx.orders())[1].shippedAt,
        from,
        Date.now(),
        "order 2",
      );
      const found = await shop.eligible({
        shippedBefore: new Date("2025-01-01T00:00:00Z"),
        limit: 10,
      });
      assert.deepEqual(found.map((o) => o.key), ["1"]);
      assert.deepEqual(
        await shop.clearImages([{ key: "1", image: "a.png" }]),
        ["1"],
      );
      assert.equal(await shop.restoreImage("1", "a.png"), true);
    });
  });

  test("values with quotes and SQL in them are bound, statuses included", async () => {
    const evil = `it's"; DROP TABLE orders; -- \\'.png`;
    const status = `o'shipped \\ "done"`;
    await withEnv(backend, {
      statuses: [status, "shipped"],
      rows: [
        { key: 1, orderNo: `' OR '1'='1`, status, image: evil },
        { key: 2, orderNo: "plain", status: "paid", image: "b.png" },
      ],
    }, async ({ fx, open }) => {
      const shop = await open();
      const r = await shop.migrate(new Date("2025-01-01T00:00:00Z"));
      assert.equal(r.backfilled, 1);
      const from = Date.now();
      await fx.setStatus(2, status);
      assertStampedBetween(
        (await fx.orders())[1].shippedAt,
        from,
        Date.now(),
        "order 2",
      );
      assert.deepEqual(
        (await shop.findByOrderNo(`' OR '1'='1`)).map((o) => o.image),
        [evil],
      );
      assert.deepEqual(await shop.findByOrderNo(`x' OR '1'='1`), []);
      assert.deepEqual(
        await shop.clearImages([{ key: "1", image: evil }]),
        ["1"],
      );
      assert.equal(await shop.restoreImage("1", evil), true);
      assert.equal((await fx.orders())[0].image, evil);
    });
  });

  test("migrate() and clearImages() run while the shop keeps writing", async () => {
    const initial = Array.from(
      { length: 200 },
      (_, i): OrderRowSpec => ({
        key: i + 1,
        orderNo: `N${i + 1}`,
        status: i % 2 ? "shipped" : "paid",
        image: `${i + 1}.png`,
      }),
    );
    await withEnv(backend, { rows: initial }, async ({ fx, open }) => {
      const shop = await open();
      const writer = (async () => {
        for (let i = 0; i < 60; i++) {
          await fx.setStatus(2 * (i + 1) - 1, "shipped");
          await fx.insertOrders([{
            key: 1000 + i,
            orderNo: `W${i}`,
            status: "shipped",
            image: `w${i}.png`,
          }]);
        }
      })();
      const [report] = await Promise.all([
        shop.migrate(new Date("2025-01-01T00:00:00Z")),
        writer,
      ]);
      assert.ok(report.addedColumn);
      let got = await fx.orders();
      const unstamped = got.filter((r) =>
        r.status === "shipped" && r.shippedAt === null
      );
      assert.deepEqual(unstamped, [], "every shipped order has shipped_at");

      const eligible = await shop.eligible({
        shippedBefore: new Date(Date.now() + 60_000),
        limit: 10_000,
      });
      const writer2 = (async () => {
        for (let i = 0; i < 60; i++) {
          await fx.setStatus(1000 + i, "processing");
        }
      })();
      const [cleared] = await Promise.all([
        shop.clearImages(
          eligible.map((o) => ({ key: o.key, image: o.image })),
        ),
        writer2,
      ]);
      assert.equal(cleared.length, eligible.length);
      got = await fx.orders();
      for (const r of got) {
        if (r.status !== "paid") assert.ok(!r.image, `order ${r.key}`);
        if (r.key >= 1000) assert.equal(r.status, "processing");
      }
    });
  });

  test("clearImages() waits for a shop busy with its own writes, then reports DatabaseBusyError", async () => {
    await withEnv(backend, {
      withShippedAt: true,
      busyTimeoutMs: 100,
      rows: rows([
        [1, "shipped", "a.png", "2025-01-01 00:00:00"],
        [2, "shipped", "b.png", "2025-01-01 00:00:00"],
      ]),
    }, async ({ fx, open }) => {
      const shop = await open();
      await shop.migrate(new Date());
      let release = await fx.holdWriteLock();
      const start = Date.now();
      try {
        await assert.rejects(
          async () => await shop.clearImages([{ key: "1", image: "a.png" }]),
          (err) => {
            assert.ok(err instanceof DatabaseBusyError, String(err));
            assert.match(err.message, /stayed locked by another writer/);
            assert.match(err.hint ?? "", /database.busyTimeoutMs/);
            return true;
          },
        );
      } finally {
        await release();
      }
      assert.ok(Date.now() - start >= 1900, "waited for the patience");
      assert.equal((await fx.orders())[0].image, "a.png", "nothing changed");

      // A lock that goes away while the agent waits is simply waited for.
      // (SQLite waits synchronously, so this process cannot let go meanwhile;
      // tests/cli_test.ts covers it with a second process.)
      if (d === "sqlite") return;
      release = await fx.holdWriteLock();
      const later = setTimeout(() => release(), 400);
      try {
        assert.deepEqual(
          await shop.clearImages([{ key: "2", image: "b.png" }]),
          ["2"],
        );
      } finally {
        clearTimeout(later);
        await release().catch(() => {});
      }
    });
  });

  if (d !== "sqlite") {
    test("openShop() names the host, never the password, when the server cannot be reached", async () => {
      const dir = await Deno.makeTempDir({ prefix: "ia-shop-" });
      try {
        const config = parseConfig(
          {
            database: {
              driver: d,
              url: `${d}://agent:s3cret-pw@127.0.0.1:1/shop`,
            },
            images: { root: dir },
            backup: { target: "none" },
            state: { dir },
          },
          join(dir, "image-agent.json"),
          { checkPaths: false },
        );
        await assert.rejects(
          async () => await openShop(config),
          (err) => {
            assert.ok(err instanceof AgentError, String(err));
            assert.match(err.message, /agent@127\.0\.0\.1:1\/shop/);
            assert.doesNotMatch(
              `${err.message} ${err.hint} ${String(err.cause)}`,
              /s3cret-pw/,
            );
            return true;
          },
        );
        Deno.env.delete("IMAGE_AGENT_TEST_NO_SUCH_VAR");
        const noVar = parseConfig(
          {
            database: {
              driver: d,
              url: `${d}://agent@127.0.0.1:1/shop`,
              passwordEnv: "IMAGE_AGENT_TEST_NO_SUCH_VAR",
            },
            images: { root: dir },
            backup: { target: "none" },
            state: { dir },
          },
          join(dir, "image-agent.json"),
          { checkPaths: false },
        );
        await assert.rejects(
          async () => await openShop(noVar),
          /"database.passwordEnv": the environment variable "IMAGE_AGENT_TEST_NO_SUCH_VAR" is not set/,
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });

    test("openShop() reports a wrong password as a config error", async () => {
      await withEnv(backend, {}, async ({ config }) => {
        const db = config.database as { passwordEnv?: string };
        const env = (n: string) =>
          n === db.passwordEnv ? "wrong-password" : Deno.env.get(n);
        await assert.rejects(
          async () => await openShop(config, { env }),
          (err) => {
            assert.ok(err instanceof AgentError, String(err));
            assert.equal(err.exitCode, 2);
            assert.match(err.message, /Cannot log in to the shop database/);
            assert.doesNotMatch(err.message, /wrong-password/);
            return true;
          },
        );
      });
    });

    test("claim() gives two agents racing for the same orders disjoint sets", async () => {
      await withEnv(backend, {}, async ({ open }) => {
        const a = await open();
        const b = await open();
        const keys = Array.from({ length: 40 }, (_, i) => String(i + 1));
        const [ca, cb] = await Promise.all([a.claim(keys), b.claim(keys)]);
        const overlap = ca.filter((k) => cb.includes(k));
        assert.deepEqual(overlap, []);
        assert.equal(ca.length + cb.length, keys.length);
        assert.deepEqual(await a.claim(ca), ca, "a claim is kept");
        await a.release(ca);
        assert.deepEqual(await b.claim(keys), keys);
        assert.deepEqual(await a.claim(keys), []);
        await b.release(keys);
        assert.deepEqual(await a.claim(["1", "2"]), ["1", "2"]);
      });
    });

    test("claim() a dead agent's claims expire with its session", async () => {
      await withEnv(backend, {}, async ({ config, dir, fx, open }) => {
        const script = fileURLToPath(
          new URL("./fakes/claim_and_hang.ts", import.meta.url),
        );
        const raw = {
          database: fx.database,
          orders: { ...NAMES, shippedStatuses: SHIPPED },
          images: { root: dir },
          backup: { target: "none" },
          state: { dir },
        };
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", script, JSON.stringify(raw), dir, "1", "2", "3"],
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        const reader = child.stdout.getReader();
        const { value } = await reader.read();
        assert.deepEqual(
          JSON.parse(new TextDecoder().decode(value)),
          ["1", "2", "3"],
        );
        assert.equal(config.database.driver, d);
        const b = await open();
        assert.deepEqual(await b.claim(["1", "2", "3", "4"]), ["4"]);
        child.kill("SIGKILL");
        await child.status;
        reader.releaseLock();
        await child.stdout.cancel().catch(() => {});
        let got: string[] = [];
        for (let i = 0; i < 50 && got.length < 4; i++) {
          got = await b.claim(["1", "2", "3", "4"]);
          if (got.length < 4) await new Promise((r) => setTimeout(r, 100));
        }
        assert.deepEqual(got, ["1", "2", "3", "4"]);
      });
    });
  } else {
    test("claim() on a SQLite shop claims everything: the run lock is enough", async () => {
      await withEnv(backend, {}, async ({ open }) => {
        const a = await open();
        assert.deepEqual(await a.claim(["1", "2"]), ["1", "2"]);
        await a.release(["1", "2"]);
      });
    });
  }
}
