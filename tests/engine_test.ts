/**
 * The engine end to end on a real shop database (every backend in
 * `shopBackends()`), real image files and a real backup folder.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { runPass } from "../src/engine/pass.ts";
import { restoreOrders } from "../src/engine/restore.ts";
import { pruneExpired } from "../src/engine/retention.ts";
import type { Step } from "../src/engine/engine.ts";
import { ConfigError } from "../src/errors.ts";
import { shopBackends } from "./fakes/shop_fixture.ts";
import {
  daysAgo,
  exists,
  makeShop,
  noise,
  NOW,
  openEngine,
  snapshotFiles,
  type TestOrder,
  type TestShop,
} from "./helpers.ts";

const A1 = noise(3000, 1);
const A2 = noise(5000, 2);

function standardOrders(): TestOrder[] {
  return [
    {
      key: 1,
      orderNo: "A001",
      status: "shipped",
      image: "2026-05/猫 橘子.png",
      shippedAt: daysAgo(30),
      content: A1,
    },
    {
      key: 2,
      orderNo: "A002",
      status: "processing",
      image: "2026-05/dog.png",
      shippedAt: daysAgo(20),
      content: A2,
    },
    {
      key: 3,
      orderNo: "A003",
      status: "shipped",
      image: "2026-05/recent.png",
      shippedAt: daysAgo(5),
      content: "recent",
    },
    {
      key: 4,
      orderNo: "A004",
      status: "pending",
      image: "pending.png",
      shippedAt: null,
      content: "pending",
    },
    {
      key: 5,
      orderNo: "A005",
      status: "shipped",
      image: "../outside.png",
      shippedAt: daysAgo(30),
    },
    {
      key: 6,
      orderNo: "A006",
      status: "shipped",
      image: "missing.png",
      shippedAt: daysAgo(30),
    },
    {
      key: 7,
      orderNo: "A007",
      status: "shipped",
      image: null,
      shippedAt: daysAgo(30),
    },
    {
      key: 8,
      orderNo: "A008",
      status: "shipped",
      image: "link.png",
      shippedAt: daysAgo(30),
    },
  ];
}

/** The standard shop plus a file outside the root reached three ways. */
async function standardShop(backend: ReturnType<typeof shopBackends>[number]) {
  const shop = await makeShop(backend, { orders: standardOrders() });
  const outside = join(shop.dir, "outside.png");
  await Deno.writeTextFile(outside, "not ours");
  await Deno.symlink(outside, join(shop.root, "link.png"));
  await shop.fixture.insertOrders([
    {
      key: 9,
      orderNo: "A009",
      status: "shipped",
      image: outside,
      shippedAt: daysAgo(30),
    },
  ]);
  return { shop, outside };
}

async function imageColumns(shop: TestShop) {
  return Object.fromEntries(
    (await shop.fixture.orders()).map((o) => [o.orderNo, o.image]),
  );
}

for (const backend of shopBackends()) {
  const name = (s: string) => `[${backend.driver}] ${s}`;

  Deno.test(
    name("runPass() backs up, deletes and clears only eligible orders"),
    async () => {
      const { shop, outside } = await standardShop(backend);
      try {
        const e = await openEngine(shop);
        const r = await runPass(e, { mode: "run", dryRun: false });
        await e.close();
        assert.deepEqual(r.summary, {
          eligible: 6,
          backedUp: 2,
          cleaned: 2,
          failed: 0,
          skipped: 4,
          freedBytes: A1.length + A2.length,
          dryRun: false,
        });
        const cols = await imageColumns(shop);
        assert.equal(cols.A001, null);
        assert.equal(cols.A002, null);
        assert.equal(cols.A003, "2026-05/recent.png");
        assert.equal(cols.A004, "pending.png");
        assert.equal(cols.A005, "../outside.png");
        assert.equal(cols.A006, "missing.png");
        assert.equal(cols.A008, "link.png");
        assert.equal(cols.A009, outside);
        assert.equal(
          await exists(join(shop.root, "2026-05/猫 橘子.png")),
          false,
        );
        assert.equal(await exists(join(shop.root, "2026-05/dog.png")), false);
        assert.equal(await exists(join(shop.root, "2026-05/recent.png")), true);
        assert.equal(await exists(join(shop.root, "link.png")), true);
        assert.equal(await Deno.readTextFile(outside), "not ours");
        const copies = await snapshotFiles(shop.backupDir);
        assert.deepEqual([...copies.keys()].sort(), [
          "A001/猫 橘子.png",
          "A002/dog.png",
        ]);
        assert.deepEqual(copies.get("A001/猫 橘子.png"), A1);
        assert.deepEqual(copies.get("A002/dog.png"), A2);
        const reasons = Object.fromEntries(
          r.outcomes.filter((o) => o.action === "skipped").map((
            o,
          ) => [o.orderNo, o.detail]),
        );
        assert.match(reasons.A005!, /outside images.root/);
        assert.match(reasons.A006!, /missing/);
        assert.match(reasons.A008!, /symlink/);
        assert.match(reasons.A009!, /outside images.root/);
      } finally {
        await shop.close();
      }
    },
  );

  Deno.test(
    name("runPass() with dryRun changes no file, row or ledger entry"),
    async () => {
      const { shop } = await standardShop(backend);
      try {
        const before = await snapshotFiles(shop.dir);
        const rowsBefore = await shop.fixture.orders();
        const e = await openEngine(shop);
        const r = await runPass(e, { mode: "run", dryRun: true });
        const counts = e.ledger.counts();
        await e.close();
        assert.equal(r.summary.dryRun, true);
        assert.equal(r.summary.backedUp, 2);
        assert.equal(r.summary.cleaned, 2);
        assert.equal(r.summary.skipped, 4);
        assert.deepEqual(await shop.fixture.orders(), rowsBefore);
        const after = await snapshotFiles(shop.dir);
        for (const [k, v] of before) {
          if (k.startsWith("state/")) continue;
          assert.deepEqual(after.get(k), v, k);
        }
        assert.equal(counts.backups.completed + counts.backups.skipped, 0);
      } finally {
        await shop.close();
      }
    },
  );

  for (const step of ["planned", "completed", "deleted", "cleared"] as Step[]) {
    Deno.test(
      name(
        `runPass() finishes after a crash at "${step}" with nothing lost or done twice`,
      ),
      async () => {
        const { shop: crashed } = await standardShop(backend);
        const { shop: calm } = await standardShop(backend);
        try {
          const e1 = await openEngine(crashed, {
            afterStep: (s, keys) => {
              if (s === step && keys.length > 0) {
                throw new Error(`crash after ${s}`);
              }
            },
          });
          await assert.rejects(
            runPass(e1, { mode: "run", dryRun: false }),
            /crash after/,
          );
          await e1.close();
          // Whatever the crash left, no image is gone without its copy.
          for (const o of await crashed.fixture.orders()) {
            if (o.orderNo !== "A001" && o.orderNo !== "A002") continue;
            const local = join(
              crashed.root,
              o.orderNo === "A001" ? "2026-05/猫 橘子.png" : "2026-05/dog.png",
            );
            if (!(await exists(local))) {
              const copy = join(
                crashed.backupDir,
                o.orderNo,
                o.orderNo === "A001" ? "猫 橘子.png" : "dog.png",
              );
              assert.deepEqual(
                await Deno.readFile(copy),
                o.orderNo === "A001" ? A1 : A2,
              );
            }
          }
          const e2 = await openEngine(crashed);
          await runPass(e2, { mode: "run", dryRun: false });
          const events = e2.ledger.events({ limit: 1000 });
          await e2.close();

          const e3 = await openEngine(calm);
          await runPass(e3, { mode: "run", dryRun: false });
          await e3.close();

          const strip = async (shop: TestShop) =>
            (await shop.fixture.orders()).map((r) => ({
              ...r,
              image: r.image?.replace(shop.dir, "<dir>") ?? null,
            }));
          assert.deepEqual(await strip(crashed), await strip(calm));
          const a = await snapshotFiles(crashed.backupDir);
          const b = await snapshotFiles(calm.backupDir);
          assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
          for (const [k, v] of b) assert.deepEqual(a.get(k), v, k);
          assert.deepEqual(
            [...(await snapshotFiles(crashed.root)).keys()].sort(),
            [...(await snapshotFiles(calm.root)).keys()].sort(),
          );
          for (const orderNo of ["A001", "A002"]) {
            const kinds = events.filter((ev) => ev.orderNo === orderNo).map((
              ev,
            ) => ev.kind);
            assert.equal(
              kinds.filter((k) => k === "backed_up").length,
              1,
              `${orderNo}: ${kinds}`,
            );
            assert.equal(
              kinds.filter((k) => k === "deleted").length,
              1,
              `${orderNo}: ${kinds}`,
            );
            assert.equal(
              kinds.filter((k) => k === "cleared").length,
              1,
              `${orderNo}: ${kinds}`,
            );
          }
        } finally {
          await crashed.close();
          await calm.close();
        }
      },
    );
  }

  Deno.test(
    name(
      "restoreOrders() brings the image back, verified, and holds it afterDays",
    ),
    async () => {
      const { shop } = await standardShop(backend);
      try {
        const e = await openEngine(shop);
        await runPass(e, { mode: "run", dryRun: false });
        await e.close();

        const r = await openEngine(shop, {
          now: new Date(NOW.getTime() + 86400000),
        });
        const out = await restoreOrders(r, ["A001"], { dryRun: false });
        assert.equal(out[0].status, "restored");
        assert.deepEqual(
          await Deno.readFile(join(shop.root, "2026-05/猫 橘子.png")),
          A1,
        );
        assert.equal((await imageColumns(shop)).A001, "2026-05/猫 橘子.png");
        // Nine days after the restore it is still kept.
        r.clock.advance(9 * 86400000);
        const held = await runPass(r, { mode: "run", dryRun: false });
        // Only A003, old enough by now, is cleaned; A001 is held.
        assert.deepEqual(
          held.outcomes.filter((o) => o.action === "cleaned").map((o) =>
            o.orderNo
          ),
          ["A003"],
        );
        assert.ok(
          held.outcomes.some((o) =>
            o.orderNo === "A001" && o.action === "held"
          ),
        );
        assert.equal(
          await exists(join(shop.root, "2026-05/猫 橘子.png")),
          true,
        );
        // Past afterDays it is cleaned again, without a second upload.
        r.clock.advance(2 * 86400000);
        const again = await runPass(r, { mode: "run", dryRun: false });
        assert.equal(again.summary.cleaned, 1);
        assert.equal(again.summary.backedUp, 0);
        assert.equal(
          await exists(join(shop.root, "2026-05/猫 橘子.png")),
          false,
        );
        assert.equal((await imageColumns(shop)).A001, null);
        const kinds = r.ledger.events({ orderNo: "A001", limit: 100 }).map((
          x,
        ) => x.kind);
        assert.equal(kinds.filter((k) => k === "backed_up").length, 1);
        assert.equal(kinds.filter((k) => k === "deleted").length, 2);
        await r.close();
      } finally {
        await shop.close();
      }
    },
  );

  Deno.test(
    name(
      "restoreOrders() refuses a copy whose bytes changed and leaves everything as it was",
    ),
    async () => {
      const { shop } = await standardShop(backend);
      try {
        const e = await openEngine(shop);
        await runPass(e, { mode: "run", dryRun: false });
        const copy = join(shop.backupDir, "A002", "dog.png");
        const damaged = await Deno.readFile(copy);
        damaged[100] ^= 0xff;
        await Deno.writeFile(copy, damaged);
        const out = await restoreOrders(e, ["A002"], { dryRun: false });
        await e.close();
        assert.equal(out[0].status, "failed");
        assert.match(out[0].message, /does not match the ledger/);
        assert.equal(await exists(join(shop.root, "2026-05/dog.png")), false);
        assert.equal((await imageColumns(shop)).A002, null);
        const leftovers = [...(await snapshotFiles(shop.root)).keys()].filter((
          k,
        ) => k.includes(".restore-"));
        assert.deepEqual(leftovers, []);
      } finally {
        await shop.close();
      }
    },
  );

  Deno.test(
    name(
      "runPass() refuses to delete with no target unless backup.required is false",
    ),
    async () => {
      const shop = await makeShop(backend, {
        orders: standardOrders().slice(0, 2),
        config: { backup: { target: "none" } },
      });
      try {
        const e = await openEngine(shop);
        await assert.rejects(
          runPass(e, { mode: "run", dryRun: false }),
          (err) => {
            assert.ok(err instanceof ConfigError);
            assert.equal(err.key, "backup.required");
            assert.match(err.hint!, /backup.required to false/);
            return true;
          },
        );
        await e.close();
        assert.equal(await exists(join(shop.root, "2026-05/dog.png")), true);
        const cfg = JSON.parse(await Deno.readTextFile(shop.configPath));
        cfg.backup.required = false;
        await Deno.writeTextFile(shop.configPath, JSON.stringify(cfg));
        const e2 = await openEngine(shop);
        const r = await runPass(e2, { mode: "run", dryRun: false });
        await e2.close();
        assert.equal(r.summary.cleaned, 2);
        assert.equal(await exists(join(shop.root, "2026-05/dog.png")), false);
      } finally {
        await shop.close();
      }
    },
  );

  Deno.test(
    name(
      "runPass() in backup mode deletes nothing, and cleanup mode uploads nothing",
    ),
    async () => {
      const { shop } = await standardShop(backend);
      try {
        const e = await openEngine(shop);
        const c0 = await runPass(e, { mode: "cleanup", dryRun: false });
        assert.equal(c0.summary.cleaned, 0);
        assert.deepEqual([...(await snapshotFiles(shop.backupDir)).keys()], []);
        const b = await runPass(e, { mode: "backup", dryRun: false });
        // backup covers every shipped order, the recent one included
        assert.equal(b.summary.backedUp, 3);
        assert.equal(b.summary.cleaned, 0);
        assert.equal(await exists(join(shop.root, "2026-05/dog.png")), true);
        const c = await runPass(e, { mode: "cleanup", dryRun: false });
        assert.equal(c.summary.cleaned, 2);
        assert.equal(c.summary.backedUp, 0);
        assert.equal(await exists(join(shop.root, "2026-05/recent.png")), true);
        await e.close();
      } finally {
        await shop.close();
      }
    },
  );

  Deno.test(
    name("runPass() does not delete an image that changed after its backup"),
    async () => {
      const { shop } = await standardShop(backend);
      try {
        const e = await openEngine(shop);
        await runPass(e, { mode: "backup", dryRun: false });
        await Deno.writeTextFile(
          join(shop.root, "2026-05/dog.png"),
          "repainted",
        );
        const r = await runPass(e, { mode: "run", dryRun: false });
        await e.close();
        // The new content is backed up again before it is deleted.
        assert.equal(r.summary.cleaned, 2);
        assert.equal(
          await Deno.readTextFile(join(shop.backupDir, "A002", "dog.png")),
          "repainted",
        );
      } finally {
        await shop.close();
      }
    },
  );

  Deno.test(
    name(
      "pruneExpired() removes old copies and restore then says when they expired",
    ),
    async () => {
      const { shop } = await standardShop(backend);
      try {
        const e = await openEngine(shop);
        await runPass(e, { mode: "run", dryRun: false });
        e.clock.advance(366 * 86400000);
        const dry = await pruneExpired(e, { dryRun: true });
        assert.equal(dry.expired, 2);
        assert.equal(await exists(join(shop.backupDir, "A001")), true);
        const p = await pruneExpired(e, { dryRun: false });
        assert.equal(p.expired, 2);
        assert.equal(
          await exists(join(shop.backupDir, "A001", "猫 橘子.png")),
          false,
        );
        const out = await restoreOrders(e, ["A001"], { dryRun: false });
        await e.close();
        assert.equal(out[0].status, "failed");
        assert.match(out[0].message, /expired on 2027-06-02 .* UTC/);
      } finally {
        await shop.close();
      }
    },
  );
}

for (const backend of shopBackends()) {
  Deno.test(`[${backend.driver}] runPass() and restoreOrders() work on a shop with its own names and statuses`, async () => {
    const names = {
      table: "t_order",
      key: "oid",
      orderNo: "sn",
      status: "state",
      hdImage: "hd_path",
      shippedAt: "ship_time",
    };
    const art = noise(7000, 9);
    const shop = await makeShop(backend, {
      names,
      shippedStatuses: ["已发货", "sent"],
      orders: [
        {
          key: 10,
          orderNo: "单-001",
          status: "已发货",
          image: "2026/05/张三的猫 橘子.png",
          shippedAt: daysAgo(15),
          content: art,
        },
        {
          key: 11,
          orderNo: "单-002",
          status: "sent",
          image: "2026/05/深/层/狗.png",
          shippedAt: daysAgo(11),
          content: "dog",
        },
        {
          key: 12,
          orderNo: "单-003",
          status: "shipped",
          image: "2026/05/other.png",
          shippedAt: daysAgo(15),
          content: "not a shipped status here",
        },
        {
          key: 13,
          orderNo: "单-004",
          status: "已发货",
          image: "2026/05/../../../x.png",
          shippedAt: daysAgo(15),
        },
      ],
    });
    try {
      const e = await openEngine(shop);
      const r = await runPass(e, { mode: "run", dryRun: false });
      assert.deepEqual(
        {
          eligible: r.summary.eligible,
          backedUp: r.summary.backedUp,
          cleaned: r.summary.cleaned,
          skipped: r.summary.skipped,
        },
        { eligible: 3, backedUp: 2, cleaned: 2, skipped: 1 },
      );
      const rows = Object.fromEntries(
        (await shop.fixture.orders()).map((o) => [o.orderNo, o.image]),
      );
      assert.deepEqual(rows, {
        "单-001": null,
        "单-002": null,
        "单-003": "2026/05/other.png",
        "单-004": "2026/05/../../../x.png",
      });
      assert.deepEqual(
        await Deno.readFile(
          join(shop.backupDir, "单-001", "张三的猫 橘子.png"),
        ),
        art,
      );
      const out = await restoreOrders(e, ["单-001"], { dryRun: false });
      assert.equal(out[0].status, "restored");
      assert.deepEqual(
        await Deno.readFile(join(shop.root, "2026/05/张三的猫 橘子.png")),
        art,
      );
      await e.close();
      // The trigger follows the configured statuses.
      await shop.fixture.insertOrders([{
        key: 14,
        orderNo: "单-005",
        status: "待发货",
        image: "y.png",
      }]);
      await shop.fixture.setStatus(14, "已发货");
      const stamped = (await shop.fixture.orders()).find((o) => o.key === 14)!;
      assert.match(stamped.shippedAt ?? "", /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    } finally {
      await shop.close();
    }
  });
}

for (const backend of shopBackends()) {
  Deno.test(`[${backend.driver}] runPass() keeps every order's own copy when their backup folders come out the same`, async () => {
    // "X/1" and "X_1" both make the folder X_1; "D-7" is two orders.
    const orders: TestOrder[] = [
      ["X/1", "a/hd.png"],
      ["X_1", "b/hd.png"],
      ["D-7", "c/hd.png"],
      ["D-7", "d/hd.png"],
    ].map(([orderNo, image], i) => ({
      key: i + 1,
      orderNo,
      status: "shipped",
      image,
      shippedAt: daysAgo(30),
      content: noise(2000 + 100 * i, 40 + i),
    }));
    const shop = await makeShop(backend, { orders });
    try {
      const e = await openEngine(shop);
      const r = await runPass(e, { mode: "run", dryRun: false });
      assert.equal(r.summary.cleaned, 4, JSON.stringify(r.errors));
      const copies = new Set<string>();
      for (const o of orders) {
        const row = e.ledger.find(String(o.key), o.image!)!;
        assert.equal(row.state, "completed");
        assert.ok(!copies.has(row.remotePath!), `${o.orderNo} shares a copy`);
        copies.add(row.remotePath!);
        assert.deepEqual(
          await Deno.readFile(join(shop.backupDir, row.remotePath!)),
          o.content,
          `the copy recorded for ${o.orderNo} (key ${o.key}) is its own image`,
        );
      }
      const out = await restoreOrders(e, ["X/1", "X_1", "D-7"], {
        dryRun: false,
      });
      assert.deepEqual(out.map((o) => o.status), Array(4).fill("restored"));
      for (const o of orders) {
        assert.deepEqual(
          await Deno.readFile(join(shop.root, o.image!)),
          o.content,
        );
      }
      await e.close();
    } finally {
      await shop.close();
    }
  });

  Deno.test(`[${backend.driver}] runPass() keeps a file another order names in other words: ./a.png, a folder symlink, a link to the file`, async () => {
    const [one, two, three] = [
      noise(1500, 61),
      noise(1600, 62),
      noise(1700, 63),
    ];
    const old = daysAgo(30);
    const recent = daysAgo(2);
    const shop = await makeShop(backend, {
      orders: [
        {
          key: 1,
          orderNo: "W-1",
          status: "shipped",
          image: "shared.png",
          shippedAt: old,
          content: one,
        },
        {
          key: 2,
          orderNo: "W-2",
          status: "shipped",
          image: "./shared.png",
          shippedAt: recent,
        },
        {
          key: 3,
          orderNo: "W-3",
          status: "shipped",
          image: "via/x.png",
          shippedAt: old,
        },
        {
          key: 4,
          orderNo: "W-4",
          status: "shipped",
          image: "sub/x.png",
          shippedAt: recent,
          content: two,
        },
        {
          key: 5,
          orderNo: "W-5",
          status: "shipped",
          image: "real.png",
          shippedAt: old,
          content: three,
        },
        {
          key: 6,
          orderNo: "W-6",
          status: "shipped",
          image: "alias.png",
          shippedAt: recent,
        },
      ],
    });
    await Deno.symlink("sub", join(shop.root, "via"));
    await Deno.symlink("real.png", join(shop.root, "alias.png"));
    try {
      const e = await openEngine(shop);
      const r = await runPass(e, { mode: "run", dryRun: false });
      assert.equal(r.summary.cleaned, 3, JSON.stringify(r.outcomes));
      for (
        const [file, bytes] of [["shared.png", one], ["sub/x.png", two], [
          "real.png",
          three,
        ]] as const
      ) {
        assert.deepEqual(
          await Deno.readFile(join(shop.root, file)),
          bytes,
          `${file} is kept`,
        );
      }
      const cols = await imageColumns(shop);
      assert.deepEqual(
        [
          cols["W-1"],
          cols["W-2"],
          cols["W-3"],
          cols["W-4"],
          cols["W-5"],
          cols["W-6"],
        ],
        [null, "./shared.png", null, "sub/x.png", null, "alias.png"],
      );
      // Once the others are due, their own backups are made and the files go.
      e.clock.advance(9 * 86400000);
      const again = await runPass(e, { mode: "run", dryRun: false });
      assert.equal(again.summary.cleaned, 3, JSON.stringify(again.outcomes));
      for (const file of ["shared.png", "sub/x.png"]) {
        assert.equal(
          await exists(join(shop.root, file)),
          false,
          `${file} goes with its last order`,
        );
      }
      const out = await restoreOrders(e, ["W-2", "W-4"], { dryRun: false });
      assert.deepEqual(out.map((o) => o.status), ["restored", "restored"]);
      assert.deepEqual(await Deno.readFile(join(shop.root, "sub/x.png")), two);
      await e.close();
    } finally {
      await shop.close();
    }
  });

  Deno.test(`[${backend.driver}] runPass() lets a shared file go when its orders are cleaned in different batches of one pass`, async () => {
    const shop = await makeShop(backend, {
      config: { cleanup: { batchSize: 1 } },
      orders: [
        {
          key: 1,
          orderNo: "P-1",
          status: "shipped",
          image: "pair.png",
          shippedAt: daysAgo(30),
          content: "pair",
        },
        {
          key: 2,
          orderNo: "P-2",
          status: "shipped",
          image: "./pair.png",
          shippedAt: daysAgo(30),
        },
      ],
    });
    try {
      const e = await openEngine(shop);
      const r = await runPass(e, { mode: "run", dryRun: false });
      assert.equal(r.summary.cleaned, 2);
      assert.equal(await exists(join(shop.root, "pair.png")), false);
      await e.close();
    } finally {
      await shop.close();
    }
  });

  Deno.test(`[${backend.driver}] runPass() keeps a file another order still names until that order is cleaned too`, async () => {
    const art = noise(4000, 11);
    const shop = await makeShop(backend, {
      orders: [
        {
          key: 1,
          orderNo: "S-1",
          status: "shipped",
          image: "shared/猫.png",
          shippedAt: daysAgo(30),
          content: art,
        },
        {
          key: 2,
          orderNo: "S-2",
          status: "shipped",
          image: "shared/猫.png",
          shippedAt: daysAgo(3),
        },
        {
          key: 3,
          orderNo: "S-3",
          status: "shipped",
          image: "pair.png",
          shippedAt: daysAgo(30),
          content: "pair",
        },
        {
          key: 4,
          orderNo: "S-4",
          status: "shipped",
          image: "pair.png",
          shippedAt: daysAgo(30),
        },
      ],
    });
    try {
      const e = await openEngine(shop);
      const first = await runPass(e, { mode: "run", dryRun: false });
      // S-1 is cleaned but its file stays for S-2, which is not due yet;
      // S-3 and S-4 share a file and are cleaned together.
      assert.equal(first.summary.cleaned, 3);
      assert.deepEqual(
        await Deno.readFile(join(shop.root, "shared/猫.png")),
        art,
      );
      assert.equal(await exists(join(shop.root, "pair.png")), false);
      let cols = await imageColumns(shop);
      assert.deepEqual(cols, {
        "S-1": null,
        "S-2": "shared/猫.png",
        "S-3": null,
        "S-4": null,
      });
      assert.equal(first.summary.freedBytes, 4);
      // Once S-2 is due, its own backup is made and the file goes.
      e.clock.advance(8 * 86400000);
      const second = await runPass(e, { mode: "run", dryRun: false });
      assert.equal(second.summary.cleaned, 1);
      assert.equal(await exists(join(shop.root, "shared/猫.png")), false);
      cols = await imageColumns(shop);
      assert.equal(cols["S-2"], null);
      assert.deepEqual(
        await Deno.readFile(join(shop.backupDir, "S-2", "猫.png")),
        art,
      );
      // Both orders can be restored.
      const out = await restoreOrders(e, ["S-1", "S-2"], { dryRun: false });
      assert.deepEqual(out.map((o) => o.status), [
        "restored",
        "already_present",
      ]);
      await e.close();
    } finally {
      await shop.close();
    }
  });
}

Deno.test("pruneExpired() keeps a copy that another order's backup found already in place until that one expires too", async () => {
  // Two orders D-8 with identical bytes: the second finds the first's copy.
  const art = noise(3000, 50);
  const shop = await makeShop(shopBackends()[0], {
    orders: [
      {
        key: 1,
        orderNo: "D-8",
        status: "shipped",
        image: "a/hd.png",
        shippedAt: daysAgo(30),
        content: art,
      },
      {
        key: 2,
        orderNo: "D-8",
        status: "shipped",
        image: "b/hd.png",
        shippedAt: daysAgo(2),
        content: art,
      },
    ],
  });
  try {
    const e = await openEngine(shop);
    await runPass(e, { mode: "run", dryRun: false });
    e.clock.advance(100 * 86400000);
    await runPass(e, { mode: "run", dryRun: false });
    const [one, two] = [
      e.ledger.find("1", "a/hd.png")!,
      e.ledger.find("2", "b/hd.png")!,
    ];
    assert.equal(
      two.remotePath,
      one.remotePath,
      "the second backup reused the copy",
    );
    assert.equal(two.verifiedBy, "sha256 of existing copy");
    const copy = join(shop.backupDir, one.remotePath!);
    // 366 days after the first backup: only it is past retention.
    e.clock.advance(266 * 86400000);
    const p = await pruneExpired(e, { dryRun: false });
    assert.equal(p.expired, 1);
    assert.deepEqual(
      await Deno.readFile(copy),
      art,
      "the copy stays for key 2",
    );
    assert.ok(e.log.lines.some((l) => /stays for order\(s\) D-8/.test(l)));
    const out = await restoreOrders(e, ["D-8"], { dryRun: false });
    assert.deepEqual(out.map((o) => o.status).sort(), ["failed", "restored"]);
    // Cleaned again after its hold, then past its own retention, the
    // second backup expires too, and the copy goes.
    e.clock.advance(11 * 86400000);
    assert.equal(
      (await runPass(e, { mode: "run", dryRun: false })).summary.cleaned,
      1,
    );
    e.clock.advance(100 * 86400000);
    assert.equal((await pruneExpired(e, { dryRun: false })).expired, 1);
    assert.equal(await exists(copy), false);
    await e.close();
  } finally {
    await shop.close();
  }
});

Deno.test("restoreOrders() refuses to write through a folder that became a symlink leading out of images.root", async () => {
  const art = noise(2500, 71);
  const shop = await makeShop(shopBackends()[0], {
    orders: [{
      key: 1,
      orderNo: "R-9",
      status: "shipped",
      image: "sub/r.png",
      shippedAt: daysAgo(30),
      content: art,
    }],
  });
  try {
    const e = await openEngine(shop);
    await runPass(e, { mode: "run", dryRun: false });
    const outside = join(shop.dir, "outside");
    await Deno.mkdir(outside);
    await Deno.remove(join(shop.root, "sub"), { recursive: true });
    await Deno.symlink(outside, join(shop.root, "sub"));
    const out = await restoreOrders(e, ["R-9"], { dryRun: false });
    assert.equal(out[0].status, "failed");
    assert.match(out[0].message, /symlink leading outside images\.root/);
    assert.deepEqual(
      [...Deno.readDirSync(outside)],
      [],
      "nothing written outside",
    );
    assert.equal(
      (await imageColumns(shop))["R-9"],
      null,
      "the column stays empty",
    );
    // With the folder back as a folder, the restore goes through.
    await Deno.remove(join(shop.root, "sub"));
    const again = await restoreOrders(e, ["R-9"], { dryRun: false });
    assert.equal(again[0].status, "restored");
    assert.deepEqual(await Deno.readFile(join(shop.root, "sub/r.png")), art);
    await e.close();
  } finally {
    await shop.close();
  }
});

Deno.test("runPass() and restoreOrders() take absolute image paths written under a symlinked images.root", async () => {
  const art = noise(2600, 72);
  const shop = await makeShop(shopBackends()[0], { orders: [] });
  try {
    // images.root is a link to the real folder; the shop writes absolute
    // paths through the link.
    const link = join(shop.dir, "images-link");
    await Deno.symlink(shop.root, link);
    const config = JSON.parse(await Deno.readTextFile(shop.configPath));
    config.images.root = "images-link";
    await Deno.writeTextFile(shop.configPath, JSON.stringify(config));
    await Deno.writeFile(join(shop.root, "a.png"), art);
    await shop.fixture.insertOrders([
      {
        key: 1,
        orderNo: "L-1",
        status: "shipped",
        image: join(link, "a.png"),
        shippedAt: daysAgo(30),
      },
    ]);
    const e = await openEngine(shop);
    const r = await runPass(e, { mode: "run", dryRun: false });
    assert.equal(r.summary.cleaned, 1, JSON.stringify(r.outcomes));
    assert.equal(await exists(join(shop.root, "a.png")), false);
    const out = await restoreOrders(e, ["L-1"], { dryRun: false });
    assert.equal(out[0].status, "restored");
    assert.deepEqual(await Deno.readFile(join(shop.root, "a.png")), art);
    assert.equal((await imageColumns(shop))["L-1"], join(link, "a.png"));
    await e.close();
  } finally {
    await shop.close();
  }
});

Deno.test("runPass() settles an image a killed run had set aside: the backed-up bytes go, other bytes come back", async () => {
  const [art, other] = [noise(1800, 81), noise(1900, 82)];
  const shop = await makeShop(shopBackends()[0], {
    orders: [
      {
        key: 1,
        orderNo: "K-1",
        status: "shipped",
        image: "k1.png",
        shippedAt: daysAgo(30),
        content: art,
      },
      {
        key: 2,
        orderNo: "K-2",
        status: "shipped",
        image: "k2.png",
        shippedAt: daysAgo(30),
        content: art,
      },
    ],
  });
  try {
    const e = await openEngine(shop);
    await runPass(e, { mode: "backup", dryRun: false });
    // A run killed between setting each image aside and unlinking it; K-2's
    // was a new version the shop had just saved.
    const aside = (n: string) =>
      join(shop.root, `.${n}.image-agent-deleting-dead0001`);
    await Deno.rename(join(shop.root, "k1.png"), aside("k1.png"));
    await Deno.remove(join(shop.root, "k2.png"));
    await Deno.writeFile(aside("k2.png"), other);
    const r = await runPass(e, { mode: "run", dryRun: false });
    assert.equal(
      await exists(aside("k1.png")),
      false,
      "the backed-up bytes are removed",
    );
    assert.equal(await exists(aside("k2.png")), false);
    assert.deepEqual(
      await Deno.readFile(join(shop.root, "k2.png")),
      other,
      "the other version is back",
    );
    assert.deepEqual(await imageColumns(shop), {
      "K-1": null,
      "K-2": "k2.png",
    });
    assert.equal(r.summary.cleaned, 1);
    // The next run backs the new version up, then cleans it.
    const again = await runPass(e, { mode: "run", dryRun: false });
    assert.equal(again.summary.cleaned, 1);
    const row = e.ledger.find("2", "k2.png")!;
    assert.deepEqual(
      await Deno.readFile(join(shop.backupDir, row.remotePath!)),
      other,
    );
    await e.close();
  } finally {
    await shop.close();
  }
});

Deno.test("runPass() puts back a folder found where a backed-up image was, and deletes nothing", async () => {
  const shop = await makeShop(shopBackends()[0], {
    orders: [{
      key: 1,
      orderNo: "F-1",
      status: "shipped",
      image: "one.png",
      shippedAt: daysAgo(30),
      content: noise(1000, 83),
    }],
  });
  try {
    const e = await openEngine(shop, {
      afterStep: (step) => {
        if (step !== "completed") return;
        const p = join(shop.root, "one.png");
        Deno.removeSync(p);
        Deno.mkdirSync(p);
        Deno.writeTextFileSync(join(p, "inside.txt"), "keep me");
      },
    });
    const r = await runPass(e, { mode: "run", dryRun: false });
    assert.equal(r.summary.cleaned, 0);
    assert.equal(
      await Deno.readTextFile(join(shop.root, "one.png", "inside.txt")),
      "keep me",
    );
    assert.deepEqual(
      [...Deno.readDirSync(shop.root)].map((x) => x.name),
      ["one.png"],
      "nothing is left hidden beside it",
    );
    assert.ok(
      !e.log.lines.some((l) => /permission denied/.test(l)),
      e.log.lines.join("\n"),
    );
    assert.equal((await imageColumns(shop))["F-1"], "one.png");
    await e.close();
  } finally {
    await shop.close();
  }
});

Deno.test("runPass() never deletes an image replaced after its backup, even with the same size and time", async () => {
  const shop = await makeShop(shopBackends()[0], {
    orders: [{
      key: 1,
      orderNo: "R-1",
      status: "shipped",
      image: "r.png",
      shippedAt: daysAgo(30),
      content: noise(2000, 21),
    }],
  });
  try {
    const path = join(shop.root, "r.png");
    const repainted = noise(2000, 22);
    let saved = false;
    const e = await openEngine(shop, {
      afterStep: (step) => {
        if (step !== "completed" || saved) return;
        saved = true;
        // The shop's editor saves a new version the usual way (a new file
        // renamed over the old one) with the same size and time stamp.
        const before = Deno.statSync(path);
        Deno.writeFileSync(path + ".new", repainted);
        Deno.utimeSync(path + ".new", before.atime!, before.mtime!);
        Deno.renameSync(path + ".new", path);
      },
    });
    const r = await runPass(e, { mode: "run", dryRun: false });
    assert.equal(r.summary.cleaned, 0);
    assert.deepEqual(await Deno.readFile(path), repainted);
    assert.equal((await imageColumns(shop))["R-1"], "r.png");
    // The next run backs up the new version before it deletes anything.
    const again = await runPass(e, { mode: "run", dryRun: false });
    await e.close();
    assert.equal(again.summary.cleaned, 1);
    assert.deepEqual(
      await Deno.readFile(join(shop.backupDir, "R-1", "r.png")),
      repainted,
    );
  } finally {
    await shop.close();
  }
});
