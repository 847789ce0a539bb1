/**
 * Hostile input to a real `image-agent` process: image paths that escape
 * the root or cannot be files, names in many scripts, order numbers made of
 * shell and SQL, and config files that are wrong in every way. Each gets a
 * clear error or a logged skip; none crashes the run or touches a file
 * outside the image root.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { filesOf, sqlite } from "./fakes/fault_kit.ts";
import {
  daysAgo,
  exists,
  makeShop,
  noise,
  runCli,
  snapshotFiles,
  type TestOrder,
} from "./helpers.ts";

const old = () => daysAgo(30, new Date());

Deno.test(
  "hostile image paths are skipped with a reason, nothing outside the root is touched, and an image reached through a symlink keeps its file for its own order",
  async () => {
    const good: TestOrder[] = [
      ["中文 猫咪.png", "H-zh"],
      ["قطة عربية.png", "H-ar"],
      ["Кошка/ёж.png", "H-ru"],
      ["emoji 🐱‍👤.png", "H-emoji"],
      ["e\u0301 combining.png", "H-nfd"],
      ["a".repeat(200) + ".png", "H-200"],
      ["shared/real.png", "H-real"],
    ].map(([image, orderNo], i) => ({
      key: i + 1,
      orderNo,
      status: "shipped",
      image,
      shippedAt: old(),
      content: noise(500 + i, i + 1),
    }));
    // H-real's order is recent: its file must survive H-link's cleanup.
    good[6].shippedAt = daysAgo(1, new Date());
    const shop = await makeShop(sqlite, { orders: good });
    try {
      const outsideDir = join(shop.dir, "outside");
      await Deno.mkdir(outsideDir);
      const secret = join(outsideDir, "secret.png");
      await Deno.writeTextFile(secret, "not the agent's");
      await Deno.symlink(secret, join(shop.root, "out-link.png"));
      await Deno.symlink(outsideDir, join(shop.root, "out-dir"));
      await Deno.symlink(
        join(shop.root, "shared/real.png"),
        join(shop.root, "in-link.png"),
      );
      await Deno.symlink("loop-b.png", join(shop.root, "loop-a.png"));
      await Deno.symlink("loop-a.png", join(shop.root, "loop-b.png"));
      await Deno.mkdir(join(shop.root, "a folder.png"));
      const hostile: [string, string][] = [
        ["X-dotdot", "../outside/secret.png"],
        ["X-deep-dotdot", "Кошка/../../outside/secret.png"],
        ["X-abs", secret],
        ["X-etc", "/etc/passwd"],
        ["X-out-link", "out-link.png"],
        ["X-out-dir", "out-dir/secret.png"],
        // Its part before the NUL names another order's image: the value
        // must be refused, not read as that file.
        ["X-nul", "shared/real.png\0../../outside/secret.png"],
        ["X-long-name", "b".repeat(300) + ".png"],
        ["X-long-path", "c/".repeat(2100) + "x.png"],
        ["X-loop", "loop-a.png"],
        ["X-folder", "a folder.png"],
        ["X-blank", "   "],
        ["X-sql", "x.png'; DROP TABLE orders; --"],
        ["H-link", "in-link.png"],
      ];
      await shop.fixture.insertOrders(hostile.map(([orderNo, image], i) => ({
        key: 100 + i,
        orderNo,
        status: "shipped",
        image,
        shippedAt: old(),
      })));
      const outsideBefore = await snapshotFiles(outsideDir);

      const r = await runCli(["run", "--json", "--config", shop.configPath]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /Unexpected internal error|at .*\.ts:\d+/);
      const summary = JSON.parse(r.stdout);
      assert.equal(summary.cleaned, 7, r.stderr); // six good ones and H-link
      for (const [orderNo] of hostile) {
        if (orderNo === "H-link") continue;
        assert.match(
          r.stderr,
          new RegExp(`order ${orderNo}: skipped: `),
          `${orderNo} must be skipped with a reason`,
        );
      }
      assert.match(r.stderr, /X-out-link: skipped: .*symlink/);
      assert.match(r.stderr, /X-long-name: skipped: .*too long/);
      assert.match(r.stderr, /X-loop: skipped: .*symlink loop/);
      assert.match(r.stderr, /X-nul: skipped: .*NUL byte/);

      assert.deepEqual(await snapshotFiles(outsideDir), outsideBefore);
      assert.equal(await Deno.readTextFile("/etc/passwd") !== "", true);
      // The link is gone with its order; the file it pointed to stays for
      // the order that owns it.
      assert.equal(await exists(join(shop.root, "in-link.png")), false);
      assert.deepEqual(
        await Deno.readFile(join(shop.root, "shared/real.png")),
        good[6].content,
      );
      const rows = new Map(
        (await shop.fixture.orders()).map((o) => [o.orderNo, o.image]),
      );
      assert.equal(rows.get("H-real"), "shared/real.png");
      for (const [orderNo, image] of hostile) {
        // (node:sqlite shows a TEXT value only up to a NUL; see X-nul.)
        if (orderNo !== "H-link") {
          assert.equal(rows.get(orderNo), image.split("\0")[0]);
        }
      }
      // The shop table is intact (the SQL in a value was only a value).
      assert.equal(rows.size, good.length + hostile.length);

      // Names in every script come back byte for byte.
      const nos = good.slice(0, 6).map((o) => o.orderNo);
      const back = await runCli([
        "restore",
        ...nos,
        "H-link",
        "--config",
        shop.configPath,
      ]);
      assert.equal(back.code, 0, back.stderr);
      for (const o of good.slice(0, 6)) {
        assert.deepEqual(
          await Deno.readFile(join(shop.root, o.image!)),
          o.content,
          o.orderNo,
        );
      }
      const link = await Deno.lstat(join(shop.root, "in-link.png"));
      assert.ok(link.isFile, "restored as a file of its own");
    } finally {
      await shop.close();
    }
  },
);

Deno.test(
  "order numbers made of shell and SQL given to restore find nothing and harm nothing",
  async () => {
    const shop = await makeShop(sqlite, {
      orders: [{
        key: 1,
        orderNo: "R-1",
        status: "shipped",
        image: "one.png",
        shippedAt: old(),
        content: "one",
      }],
    });
    try {
      assert.equal(
        (await runCli(["run", "--config", shop.configPath])).code,
        0,
      );
      const evil = [
        "R-1' OR '1'='1",
        'R-1"; DELETE FROM orders; --',
        "%",
        "_",
        "*",
        "$(touch pwned)",
        "`touch pwned`",
        "; touch pwned",
        "../../etc/passwd",
        "R-1\nR-1",
        "-",
        "a".repeat(5000),
      ];
      const before = await filesOf(shop.dir);
      const r = await runCli(
        ["restore", "--json", "--config", shop.configPath, "--", ...evil],
        { cwd: shop.dir },
      );
      assert.equal(r.code, 1, r.stderr);
      assert.doesNotMatch(r.stderr, /Unexpected internal error/);
      const out = JSON.parse(r.stdout);
      assert.equal(out.restored, 0);
      assert.equal(out.failed, evil.length);
      assert.equal(await exists(join(shop.dir, "pwned")), false);
      assert.equal(await exists(join(shop.root, "one.png")), false);
      const rows = await shop.fixture.orders();
      assert.equal(rows.length, 1);
      assert.ok(!rows[0].image);
      const after = await filesOf(shop.dir);
      for (const k of before.keys()) {
        if (!k.startsWith("state/")) assert.ok(after.has(k), k);
      }
    } finally {
      await shop.close();
    }
  },
);

Deno.test(
  "config files wrong in every way exit 2 naming the key, with no stack trace and no file touched",
  async (t) => {
    const shop = await makeShop(sqlite, {
      orders: [{
        key: 1,
        orderNo: "C-1",
        status: "shipped",
        image: "one.png",
        shippedAt: old(),
        content: "one",
      }],
    });
    try {
      const base = JSON.parse(await Deno.readTextFile(shop.configPath));
      // deno-lint-ignore no-explicit-any -- the cases reach into any part
      type Mutate = (c: Record<string, any>) => unknown;
      const cases: [string, Mutate, RegExp][] = [
        ["config is an array", () => [], /./],
        ["config is a number", () => 42, /./],
        ["config is null", () => null, /./],
        ["section is a string", (c) => ((c.backup = "local"), c), /backup/],
        ["section is null", (c) => ((c.images = null), c), /images/],
        ["target is a number", (c) => ((c.backup.target = 1), c), /target/],
        [
          "target is unknown",
          (c) => ((c.backup.target = "s3"), c),
          /backup.target/,
        ],
        [
          "statuses is a string",
          (c) => ((c.orders.shippedStatuses = "shipped"), c),
          /shippedStatuses/,
        ],
        [
          "statuses is empty",
          (c) => ((c.orders.shippedStatuses = []), c),
          /shippedStatuses/,
        ],
        [
          "afterDays is negative",
          (c) => ((c.cleanup = { afterDays: -1 }), c),
          /afterDays/,
        ],
        [
          "afterDays is huge",
          (c) => ((c.cleanup = { afterDays: 1e300 }), c),
          /afterDays/,
        ],
        [
          "afterDays is fractional",
          (c) => ((c.cleanup = { afterDays: 1.5 }), c),
          /afterDays/,
        ],
        [
          "required is a string",
          (c) => ((c.backup.required = "no"), c),
          /backup.required/,
        ],
        ["root is a number", (c) => ((c.images.root = 7), c), /images.root/],
        ["root is missing", (c) => (delete c.images.root, c), /images.root/],
        ["images is missing", (c) => (delete c.images, c), /images/],
        ["database is missing", (c) => (delete c.database, c), /database/],
        [
          "SQL in a column name",
          (c) => ((c.orders.hdImage = "hd_image = NULL --"), c),
          /orders.hdImage/,
        ],
        [
          "quote in a key name",
          (c) => ((c.orders.key = 'id" OR 1=1 --'), c),
          /orders.key/,
        ],
        [
          "unknown top-level key",
          (c) => ((c.clean = { afterDays: 1 }), c),
          /"clean" is not known/,
        ],
        [
          "local dir is a number",
          (c) => ((c.backup.local.dir = 5), c),
          /backup.local.dir/,
        ],
        [
          "a NUL in a path",
          (c) => ((c.images.root = "hd\0"), c),
          /images.root/,
        ],
      ];
      const files = await filesOf(shop.root);
      for (const [label, mutate, expected] of cases) {
        await t.step(label, async () => {
          const text = JSON.stringify(mutate(structuredClone(base)));
          await Deno.writeTextFile(shop.configPath, text);
          const r = await runCli(["run", "--config", shop.configPath]);
          assert.equal(r.code, 2, `${label}: ${r.stderr}`);
          assert.match(r.stderr, expected, label);
          assert.doesNotMatch(r.stderr, /Unexpected internal error/, label);
          assert.deepEqual(await filesOf(shop.root), files, label);
        });
      }
      for (
        const [label, text] of [["empty file", ""], ["BOM only", "\ufeff"]]
      ) {
        await t.step(label, async () => {
          await Deno.writeTextFile(shop.configPath, text);
          const r = await runCli(["status", "--config", shop.configPath]);
          assert.equal(r.code, 2, `${label}: ${r.stderr}`);
          assert.doesNotMatch(r.stderr, /Unexpected internal error/);
        });
      }
      const db = new DatabaseSync(join(shop.dir, "shop.db"), {
        readOnly: true,
      });
      const tables = db.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table'",
      ).all();
      db.close();
      assert.deepEqual(tables.map((x) => x.name), ["orders"]);
    } finally {
      await shop.close();
    }
  },
);
