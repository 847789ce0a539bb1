/**
 * `backup.target: "baidu"` end to end: the real CLI, run as a subprocess the
 * way cron runs it, against the fake Baidu server on loopback in this
 * process, over a real shop database and real image files.
 *
 * `baidu login --code`, then `run`, `restore`, `prune`, and every injected
 * fault class through the whole program. After each command two things must
 * hold: no local image is gone unless the fake holds its copy with the same
 * bytes, and no token, secret or signed address was printed.
 */

import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { FakeBaidu, type FakeBaiduOptions } from "./fakes/baidu_server.ts";
import { shopBackends } from "./fakes/shop_fixture.ts";
import {
  type CliResult,
  daysAgo,
  exists,
  MAIN,
  makeShop,
  noise,
  REPO,
  runCli,
  type TestOrder,
  type TestShop,
} from "./helpers.ts";

const MIB = 1 << 20;
const FOLDER = "/apps/image-agent/hd";
const SQLITE = shopBackends()[0];

interface E2E extends AsyncDisposable {
  fake: FakeBaidu;
  shop: TestShop;
  originals: Map<string, { image: string; bytes: Uint8Array }>;
  /** Runs `image-agent ARGS --config ... --verbose`, checking for leaks. */
  cli(...args: string[]): Promise<CliResult>;
  /** The image columns, by order number. */
  columns(): Promise<Record<string, string | null>>;
  remote(orderNo: string): Uint8Array | undefined;
  /** No local image gone without a complete, identical copy on the fake. */
  assertSafe(): Promise<void>;
  setConfig(patch: (c: Record<string, unknown>) => void): Promise<void>;
}

/** Shipped long enough ago for the real clock the CLI uses. */
function shipped(daysBack: number): string {
  return daysAgo(daysBack, new Date());
}

function order(
  no: string,
  image: string,
  content: Uint8Array,
  days = 30,
): TestOrder {
  return {
    key: Number(no.replace(/\D/g, "")),
    orderNo: no,
    status: "shipped",
    image,
    shippedAt: shipped(days),
    content,
  };
}

async function setup(
  orders: TestOrder[],
  options: {
    fake?: FakeBaiduOptions;
    backup?: Record<string, unknown>;
    login?: boolean;
  } = {},
): Promise<E2E> {
  const fake = await FakeBaidu.start({ codes: ["good-code"], ...options.fake });
  const shop = await makeShop(SQLITE, {
    orders,
    config: {
      backup: {
        target: "baidu",
        concurrency: 1,
        ...options.backup,
        baidu: {
          appKey: fake.appKey,
          secretKey: fake.secretKey,
          folder: FOLDER,
          endpoints: fake.endpoints,
        },
      },
    },
  });
  const originals = new Map(
    orders.filter((o) => o.content !== undefined && o.image).map((o) => [
      o.orderNo,
      { image: o.image!, bytes: o.content as Uint8Array },
    ]),
  );
  const e: E2E = {
    fake,
    shop,
    originals,
    async cli(...args) {
      const r = await runCli([...args, "--config", shop.configPath, "-v"], {
        cwd: shop.dir,
      });
      assertNoLeak(fake, r);
      return r;
    },
    async columns() {
      return Object.fromEntries(
        (await shop.fixture.orders()).map((o) => [o.orderNo, o.image]),
      );
    },
    remote(orderNo) {
      const o = originals.get(orderNo)!;
      return fake.files.get(
        `${FOLDER}/${orderNo}/${basename(o.image).normalize("NFC")}`,
      )?.bytes;
    },
    async assertSafe() {
      for (const [no, o] of originals) {
        if (await exists(join(shop.root, o.image))) continue;
        const copy = e.remote(no);
        assert.ok(copy, `order ${no}: the image was deleted without a copy`);
        assert.ok(
          same(copy, o.bytes),
          `order ${no}: the image was deleted but the copy differs`,
        );
      }
    },
    async setConfig(patch) {
      const c = JSON.parse(await Deno.readTextFile(shop.configPath));
      patch(c);
      await Deno.writeTextFile(shop.configPath, JSON.stringify(c, null, 2));
    },
    async [Symbol.asyncDispose]() {
      await fake.close();
      await shop.close();
    },
  };
  if (options.login !== false) {
    const login = await e.cli("baidu", "login", "--code", "good-code");
    assert.equal(login.code, 0, login.stderr);
  }
  return e;
}

function same(a: Uint8Array | undefined, b: Uint8Array): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function assertNoLeak(fake: FakeBaidu, r: CliResult): void {
  const secrets = [
    ...fake.issued,
    fake.secretKey,
    "SIGNED-SECRET",
    "CDN-SIGNATURE",
    "SK-secret",
    "SS-secret",
    "access_token=",
    "sign=",
  ];
  for (const s of secrets) {
    assert.ok(!r.stdout.includes(s), `"${s}" printed on stdout:\n${r.stdout}`);
    assert.ok(!r.stderr.includes(s), `"${s}" printed on stderr:\n${r.stderr}`);
  }
}

function summary(r: CliResult) {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(
      `not JSON (exit ${r.code}):\n${r.stdout}\n--- stderr\n${r.stderr}`,
    );
  }
}

/** Three orders: two small, one of three 4 MiB parts, one too recent. */
function standard(): TestOrder[] {
  return [
    order("A001", "2026-05/猫 橘子.png", noise(3000, 1)),
    order("A002", "2026-05/big dog.png", noise(9 * MIB + 123, 2)),
    order("A003", "2026-05/兔子 3.png", noise(7000, 3)),
    order("A004", "2026-05/recent.png", noise(100, 4), 2),
  ];
}

Deno.test("baidu e2e: login, run, restore, prune and an expired restore through the CLI", async () => {
  await using e = await setup(standard(), { backup: { concurrency: 2 } });

  const run = await e.cli("run", "--json");
  assert.equal(run.code, 0, run.stderr);
  const s = summary(run);
  assert.equal(s.eligible, 3);
  assert.equal(s.backedUp, 3);
  assert.equal(s.cleaned, 3);
  assert.equal(s.failed, 0);
  for (const no of ["A001", "A002", "A003"]) {
    assert.ok(same(e.remote(no), e.originals.get(no)!.bytes), `${no} copy`);
    assert.ok(!(await exists(join(e.shop.root, e.originals.get(no)!.image))));
  }
  assert.ok(await exists(join(e.shop.root, "2026-05/recent.png")));
  assert.deepEqual(await e.columns(), {
    A001: null,
    A002: null,
    A003: null,
    A004: "2026-05/recent.png",
  });
  // A002 went as three 4 MiB-rule parts to one upload id.
  assert.deepEqual(
    [...e.fake.partsByUpload.values()].map((p) => p.length).sort(),
    [1, 1, 3],
  );
  await e.assertSafe();

  const restore = await e.cli("restore", "A002");
  assert.equal(restore.code, 0, restore.stderr);
  assert.match(restore.stdout, /A002: restored/);
  const back = await Deno.readFile(join(e.shop.root, "2026-05/big dog.png"));
  assert.ok(same(back, e.originals.get("A002")!.bytes));
  assert.equal((await e.columns()).A002, "2026-05/big dog.png");
  assert.ok(e.fake.userAgents.length > 0);
  assert.ok(e.fake.userAgents.every((ua) => ua === "pan.baidu.com"));

  // Retention of one day, and copies completed three days ago: the CLI runs
  // on the real clock, so the ledger is told the backups are that old.
  await e.setConfig((c) => {
    (c.backup as Record<string, unknown>).retentionDays = 1;
  });
  const db = new DatabaseSync(join(e.shop.stateDir, "ledger.db"));
  db.prepare(`UPDATE backups SET completed_at = ? WHERE state = 'completed'`)
    .run(shipped(3));
  db.close();

  const prune = await e.cli("prune", "--json");
  assert.equal(prune.code, 0, prune.stderr);
  const p = summary(prune);
  assert.equal(p.expired, 2);
  assert.deepEqual([...p.orders].sort(), ["A001", "A003"]);
  assert.equal(e.remote("A001"), undefined);
  assert.equal(e.remote("A003"), undefined);
  assert.ok(e.remote("A002"), "a copy whose image is back on disk is kept");

  const expired = await e.cli("restore", "A001");
  assert.equal(expired.code, 1);
  assert.match(
    expired.stderr,
    /The backup of order "A001" expired on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC.*cannot be restored/,
  );
  assert.ok(!(await exists(join(e.shop.root, "2026-05/猫 橘子.png"))));
});

Deno.test("baidu e2e: the drive fills up half way: the run stops, says how much is needed, deletes nothing", async () => {
  await using e = await setup(standard());
  // After the first file another client fills the drive: 1 KiB stays free.
  e.fake.fail("precreate", { fillQuota: 1024 }, 1, 1);
  const r = await e.cli("run", "--json");
  assert.equal(r.code, 1, r.stderr);
  assert.match(
    r.stderr,
    /Baidu Netdisk is full: "[^"]+" needs \d+(\.\d)? (KiB|MiB), 1\.0 KiB free/,
  );
  assert.match(r.stderr, /Stopped early/);
  const s = summary(r);
  assert.equal(s.cleaned, 0);
  for (const o of e.originals.values()) {
    assert.ok(await exists(join(e.shop.root, o.image)), o.image);
  }
  assert.equal((await e.columns()).A001, "2026-05/猫 橘子.png");
  await e.assertSafe();
  // Space freed: the next run finishes the job.
  e.fake.quotaTotal = 1024 ** 4;
  const again = await e.cli("run", "--json");
  assert.equal(again.code, 0, again.stderr);
  assert.equal(summary(again).cleaned, 3);
  await e.assertSafe();
});

Deno.test("baidu e2e: an access token that expires mid-upload is refreshed and the run goes on", async () => {
  await using e = await setup(standard());
  const tokensBefore = e.fake.calls.get("token") ?? 0;
  e.fake.fail("upload", { expireToken: true }, 1, 2);
  const r = await e.cli("run", "--json");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(summary(r).cleaned, 3);
  assert.equal(e.fake.calls.get("token"), tokensBefore + 1, "one refresh");
  assert.match(r.stderr, /refused the access token; refreshing it/);
  await e.assertSafe();
  // The rotated pair was saved: the next command still works.
  const who = await e.cli("baidu", "whoami");
  assert.equal(who.code, 0, who.stderr);
});

Deno.test("baidu e2e: a refused refresh stops the run with 'log in again' and deletes nothing", async () => {
  await using e = await setup(standard());
  e.fake.fail("upload", { revoke: true }, 1, 1);
  const r = await e.cli("run", "--json");
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /The Baidu login has expired or was revoked/);
  assert.match(r.stderr, /log in again/);
  assert.equal(summary(r).cleaned, 0);
  for (const o of e.originals.values()) {
    assert.ok(await exists(join(e.shop.root, o.image)), o.image);
  }
  await e.assertSafe();
});

Deno.test("baidu e2e: throttling is waited out as the server asks and the run completes", async () => {
  await using e = await setup(standard());
  e.fake.fail(
    "upload",
    {
      errorCode: 31034,
      status: 403,
      msg: "hit frequence control",
      retryAfter: 1,
    },
    1,
    1,
  );
  const r = await e.cli("run", "--json");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(summary(r).cleaned, 3);
  const times = e.fake.times.get("upload")!;
  const refused = times[1];
  assert.ok(
    times.slice(2).some((t) => t - refused >= 950),
    "the refused part was sent again only after the wait",
  );
  await e.assertSafe();
});

Deno.test("baidu e2e: part connections broken while sending or answering, and a broken download, all recover", async () => {
  await using e = await setup(standard());
  // One answer breaks after the part arrived; one connection is closed by
  // the upload host 512 KiB into a part, with the client still sending.
  e.fake.fail("upload", { dropAfter: 0 }, 1, 1);
  e.fake.fail("upload", { cutAfter: 512 * 1024 });
  const r = await e.cli("run", "--json");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(summary(r).cleaned, 3);
  assert.equal(e.fake.calls.get("upload"), 7, "five parts and two resends");
  assert.equal(
    r.stderr.match(/superfile2 upload failed: connection broken/g)?.length,
    2,
  );
  await e.assertSafe();

  e.fake.fail("cdn", { dropAfter: 3 * MIB });
  const restore = await e.cli("restore", "A002");
  assert.equal(restore.code, 0, restore.stderr);
  assert.match(restore.stderr, /broke at byte \d+; resuming/);
  assert.ok(e.fake.ranges.some((r) => /^bytes=\d+-$/.test(r)), restore.stderr);
  const back = await Deno.readFile(join(e.shop.root, "2026-05/big dog.png"));
  assert.ok(same(back, e.originals.get("A002")!.bytes));
});

Deno.test("baidu e2e: a corrupted download is refused and the order stays as it was", async () => {
  await using e = await setup(standard());
  assert.equal((await e.cli("run", "--json")).code, 0);
  const dir = join(e.shop.root, "2026-05");
  const before = [...Deno.readDirSync(dir)].map((x) => x.name).sort();

  e.fake.fail("cdn", { corrupt: true });
  const bad = await e.cli("restore", "A001");
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /does not match the ledger \(SHA-256 differs\)/);
  assert.ok(!(await exists(join(e.shop.root, "2026-05/猫 橘子.png"))));
  assert.equal((await e.columns()).A001, null);
  assert.deepEqual(
    [...Deno.readDirSync(dir)].map((x) => x.name).sort(),
    before,
    "no temp file left behind",
  );
  await e.assertSafe();

  const good = await e.cli("restore", "A001");
  assert.equal(good.code, 0, good.stderr);
  const back = await Deno.readFile(join(e.shop.root, "2026-05/猫 橘子.png"));
  assert.ok(same(back, e.originals.get("A001")!.bytes));
});

Deno.test("baidu e2e: a name the server refuses skips that order; the others go", async () => {
  await using e = await setup([
    order("B001", "2026-05/猫#1.png", noise(2000, 5)),
    order("B002", "2026-05/狗 2.png", noise(2500, 6)),
  ]);
  e.fake.rejectName = (name) => name.includes("#");
  const r = await e.cli("run", "--json");
  assert.equal(r.code, 0, r.stderr);
  const s = summary(r);
  assert.equal(s.skipped, 1);
  assert.equal(s.cleaned, 1);
  assert.match(r.stderr, /order B001: skipped: .*file name invalid/);
  assert.ok(await exists(join(e.shop.root, "2026-05/猫#1.png")));
  assert.equal((await e.columns()).B001, "2026-05/猫#1.png");
  assert.equal((await e.columns()).B002, null);
  await e.assertSafe();
});

Deno.test("baidu e2e: a run killed mid-upload continues from the stored upload id", async () => {
  const PARTS = 12;
  await using e = await setup([
    order("C001", "2026-05/huge portrait.png", noise(PARTS * 4 * MIB - 77, 7)),
  ]);
  // Slow parts, so the kill lands in the middle of the file.
  e.fake.fail("upload", { delayMs: 150 }, 100);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "run", "--config", e.shop.configPath],
    cwd: REPO,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 20_000;
  const received = () => e.fake.partsByUpload.get(e.fake.uploadIds[0]) ?? [];
  while (received().length < 5 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill("SIGKILL");
  await child.status;
  const firstRun = [...received()];
  assert.ok(firstRun.length >= 5 && firstRun.length < PARTS, `${firstRun}`);
  e.fake.clearFaults();

  const db = new DatabaseSync(join(e.shop.stateDir, "ledger.db"));
  const row = db.prepare(`SELECT upload_state, state FROM backups`).get() as {
    upload_state: string;
    state: string;
  };
  db.close();
  const saved = JSON.parse(row.upload_state);
  assert.equal(saved.uploadId, e.fake.uploadIds[0]);
  const done = Object.keys(saved.done).map(Number);
  assert.ok(done.length >= 3, `parts recorded done: ${done}`);
  assert.ok(await exists(join(e.shop.root, "2026-05/huge portrait.png")));

  const r = await e.cli("run", "--json");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /Resuming the upload of ".*": \d+ of 12 parts/);
  assert.equal(e.fake.calls.get("precreate"), 1, "no new session");
  assert.deepEqual(e.fake.uploadIds, [saved.uploadId]);
  const secondRun = received().slice(firstRun.length);
  assert.deepEqual(
    [...new Set([...done, ...secondRun])].sort((a, b) => a - b),
    Array.from({ length: PARTS }, (_, i) => i),
  );
  assert.ok(
    secondRun.every((i) => !done.includes(i)),
    "parts recorded done are not sent again",
  );
  assert.ok(same(e.remote("C001"), e.originals.get("C001")!.bytes));
  assert.ok(!(await exists(join(e.shop.root, "2026-05/huge portrait.png"))));
  assert.equal((await e.columns()).C001, null);
  await e.assertSafe();
});
