/**
 * The whole CLI as an operator meets it: `deno run main.ts ...` as a
 * subprocess, checking stdout, stderr and the exit code.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { COMMANDS } from "../src/cli/commands.ts";
import { acquireRunLock } from "../src/ledger/lock.ts";
import { shopBackends } from "./fakes/shop_fixture.ts";
import {
  daysAgo,
  exists,
  makeShop,
  noise,
  runCli,
  type TestOrder,
} from "./helpers.ts";

const sqlite = shopBackends()[0];

function orders(): TestOrder[] {
  return [
    {
      key: 1,
      orderNo: "B-1",
      status: "shipped",
      image: "a/one.png",
      shippedAt: daysAgo(40, new Date()),
      content: noise(2048, 7),
    },
    {
      key: 2,
      orderNo: "B-2",
      status: "shipped",
      image: "a/two.png",
      shippedAt: daysAgo(1, new Date()),
      content: "two",
    },
  ];
}

Deno.test("image-agent --help lists every command, and each has its own help", async () => {
  const top = await runCli(["--help"]);
  assert.equal(top.code, 0);
  for (const c of COMMANDS) {
    assert.match(top.stdout, new RegExp(`\\n  ${c.name} `), c.name);
  }
  for (const c of COMMANDS) {
    const r = await runCli([c.name, "--help"]);
    assert.equal(r.code, 0, c.name);
    assert.match(r.stdout, new RegExp(`Usage: image-agent ${c.name}`), c.name);
  }
});

Deno.test("image-agent with no command or an unknown one exits 2 and says why", async () => {
  const none = await runCli([]);
  assert.equal(none.code, 2);
  assert.match(none.stdout, /Usage: image-agent COMMAND/);
  const bad = await runCli(["frobnicate"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Unknown command "frobnicate"/);
  const flag = await runCli(["status", "--bogus"]);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /--bogus/);
});

Deno.test("config errors exit 2 and name the key", async (t) => {
  const shop = await makeShop(sqlite, { orders: orders() });
  try {
    const base = JSON.parse(await Deno.readTextFile(shop.configPath));
    // deno-lint-ignore no-explicit-any -- the cases reach into any part of the config
    const cases: [string, (c: Record<string, any>) => void, RegExp][] = [
      [
        "unknown key",
        (c) => (c.backup.retentionDay = 30),
        /"backup.retentionDay" is not known: did you mean "backup.retentionDays"/,
      ],
      [
        "wrong type",
        (c) => (c.cleanup = { afterDays: "ten" }),
        /"cleanup.afterDays" must be a whole number, not the string "ten"/,
      ],
      [
        "SQL in a table name",
        (c) => (c.orders.table = "orders; DROP TABLE orders"),
        /"orders.table".*not a plain SQL identifier/,
      ],
      [
        "missing database",
        (c) => (c.database.path = "nope.db"),
        /"database.path".*does not exist/,
      ],
      [
        "missing image folder",
        (c) => (c.images.root = "no-such-folder"),
        /"images.root".*does not exist/,
      ],
      [
        "absent column",
        (c) => (c.orders.hdImage = "picture"),
        /"orders.hdImage": table "orders" has no column "picture"/,
      ],
      ["bad JSON", () => {}, /is not valid JSON/],
    ];
    for (const [label, mutate, expected] of cases) {
      await t.step(label, async () => {
        const c = structuredClone(base);
        mutate(c);
        await Deno.writeTextFile(
          shop.configPath,
          label === "bad JSON" ? "{ not json" : JSON.stringify(c),
        );
        const r = await runCli(["run", "--config", shop.configPath]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, expected);
        assert.equal(await exists(join(shop.root, "a/one.png")), true);
      });
    }
    const tables = new DatabaseSync(join(shop.dir, "shop.db")).prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table'",
    ).all();
    assert.deepEqual(tables.map((x) => x.name), ["orders"]);
  } finally {
    await shop.close();
  }
});

Deno.test("run --json prints the summary object of the contract", async () => {
  const shop = await makeShop(sqlite, { orders: orders() });
  try {
    const dry = await runCli([
      "run",
      "--dry-run",
      "--json",
      "--config",
      shop.configPath,
    ]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(JSON.parse(dry.stdout), {
      eligible: 1,
      backedUp: 1,
      cleaned: 1,
      failed: 0,
      skipped: 0,
      freedBytes: 2048,
      dryRun: true,
    });
    assert.equal(await exists(join(shop.root, "a/one.png")), true);
    const r = await runCli(["run", "--json", "--config", shop.configPath]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      eligible: 1,
      backedUp: 1,
      cleaned: 1,
      failed: 0,
      skipped: 0,
      freedBytes: 2048,
      dryRun: false,
    });
    // Under a scheduler (no TTY) the log is plain timestamped lines.
    assert.match(r.stderr, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO {2}/m);
    assert.match(r.stderr, /order B-1: backed up .*verified by sha256 of copy/);
    const status = await runCli([
      "status",
      "--json",
      "--config",
      shop.configPath,
    ]);
    const s = JSON.parse(status.stdout);
    assert.deepEqual(s.backups, {
      pending: 0,
      completed: 1,
      failed: 0,
      skipped: 0,
      expired: 0,
    });
    assert.equal(s.cleanedOrders, 1);
    assert.equal(s.freedBytes, 2048);
    const runs = JSON.parse(
      (await runCli(["runs", "--json", "--config", shop.configPath])).stdout,
    );
    assert.equal(runs.runs.length, 1);
    assert.equal(runs.runs[0].trigger, "manual");
    assert.equal(runs.runs[0].status, "ok");
    const log = JSON.parse(
      (await runCli([
        "log",
        "--order",
        "B-1",
        "--json",
        "--config",
        shop.configPath,
      ])).stdout,
    );
    assert.deepEqual(log.events.map((e: { kind: string }) => e.kind), [
      "cleared",
      "deleted",
      "backed_up",
      "planned",
    ]);
  } finally {
    await shop.close();
  }
});

Deno.test("a second run exits 3 and names the process holding the lock", async () => {
  const shop = await makeShop(sqlite, { orders: orders() });
  try {
    const lock = await acquireRunLock(shop.stateDir, { command: "run" });
    try {
      const r = await runCli(["run", "--config", shop.configPath]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, new RegExp(`process ${Deno.pid} on .*'run'`));
      assert.equal(await exists(join(shop.root, "a/one.png")), true);
    } finally {
      lock.release();
    }
    const after = await runCli(["run", "--config", shop.configPath]);
    assert.equal(after.code, 0, after.stderr);
  } finally {
    await shop.close();
  }
});

Deno.test("a lock left by a killed process is taken over", async () => {
  const shop = await makeShop(sqlite, { orders: orders() });
  try {
    const holder = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { acquireRunLock } from ${
          JSON.stringify(new URL("../src/ledger/lock.ts", import.meta.url).href)
        };
         await acquireRunLock(${
          JSON.stringify(shop.stateDir)
        }, { command: "run" });
         console.log("locked");
         await new Promise(() => setInterval(() => {}, 1000));`,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = holder.stdout.getReader();
    const first = await reader.read();
    assert.match(new TextDecoder().decode(first.value), /locked/);
    const blocked = await runCli(["run", "--config", shop.configPath]);
    assert.equal(blocked.code, 3);
    holder.kill("SIGKILL");
    await holder.status;
    reader.releaseLock();
    await holder.stdout.cancel();
    const r = await runCli(["run", "--config", shop.configPath]);
    assert.equal(r.code, 0, r.stderr);
  } finally {
    await shop.close();
  }
});

Deno.test("a shop database busy with the shop's own writes is waited for, then reported", async () => {
  const shop = await makeShop(sqlite, {
    orders: orders(),
    config: { database: { busyTimeoutMs: 200 } },
  });
  try {
    const other = new DatabaseSync(join(shop.dir, "shop.db"));
    other.exec("BEGIN EXCLUSIVE");
    setTimeout(() => other.exec("COMMIT"), 800);
    const waited = await runCli(["backup", "--config", shop.configPath]);
    assert.equal(waited.code, 0, waited.stderr);
    assert.doesNotMatch(waited.stderr, /malformed|corrupt/i);

    other.exec("BEGIN EXCLUSIVE");
    const r = await runCli(["run", "--config", shop.configPath]);
    other.exec("COMMIT");
    other.close();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /shop database stayed locked by another writer/);
    assert.match(r.stderr, /database.busyTimeoutMs/);
    assert.equal(await exists(join(shop.root, "a/one.png")), true);
    const again = await runCli(["run", "--config", shop.configPath]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(await exists(join(shop.root, "a/one.png")), false);
  } finally {
    await shop.close();
  }
});

Deno.test("restore with SQL and shell characters in the order number finds nothing and harms nothing", async () => {
  const shop = await makeShop(sqlite, { orders: orders() });
  try {
    const evil = `x'; DROP TABLE orders; -- $(rm -rf /) \`id\``;
    const r = await runCli(["restore", evil, "--config", shop.configPath]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`There is no order "${evil}"`), r.stderr);
    assert.equal((await shop.fixture.orders()).length, 2);
  } finally {
    await shop.close();
  }
});

Deno.test("init reads the order table's columns and never overwrites without --force", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const db = new DatabaseSync(join(dir, "店铺.db"));
    db.exec(
      `CREATE TABLE t_order (order_id INTEGER PRIMARY KEY, order_sn TEXT, state TEXT, hd_path TEXT)`,
    );
    db.close();
    await Deno.mkdir(join(dir, "图片"));
    const out = join(dir, "cfg.json");
    const r = await runCli([
      "init",
      "--database",
      join(dir, "店铺.db"),
      "--images",
      join(dir, "图片"),
      "--out",
      out,
    ], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const cfg = JSON.parse(await Deno.readTextFile(out));
    assert.deepEqual(
      { ...cfg.orders, shippedStatuses: undefined },
      {
        table: "t_order",
        key: "order_id",
        orderNo: "order_sn",
        status: "state",
        hdImage: "hd_path",
        shippedAt: "shipped_at",
        shippedStatuses: undefined,
      },
    );
    assert.equal(cfg.database.path, "店铺.db");
    await Deno.writeTextFile(out, "{}");
    const again = await runCli([
      "init",
      "--database",
      join(dir, "店铺.db"),
      "--images",
      join(dir, "图片"),
      "--out",
      out,
    ], { cwd: dir });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists.*not overwritten/);
    assert.equal(await Deno.readTextFile(out), "{}");
    const forced = await runCli([
      "init",
      "--force",
      "--database",
      join(dir, "店铺.db"),
      "--images",
      join(dir, "图片"),
      "--out",
      out,
    ], { cwd: dir });
    assert.equal(forced.code, 0);
    assert.notEqual(await Deno.readTextFile(out), "{}");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("migrate twice: the second run changes nothing", async () => {
  const shop = await makeShop(sqlite, { orders: orders(), migrate: false });
  try {
    const first = await runCli([
      "migrate",
      "--json",
      "--config",
      shop.configPath,
    ]);
    assert.equal(first.code, 0, first.stderr);
    const a = JSON.parse(first.stdout);
    assert.equal(a.addedColumn, true);
    assert.equal(a.backfilled, 2);
    const second = await runCli(["migrate", "--config", shop.configPath]);
    assert.equal(second.code, 0);
    assert.match(second.stdout, /already present/);
    assert.match(second.stdout, /no already-shipped order needed a stamp/);
  } finally {
    await shop.close();
  }
});
