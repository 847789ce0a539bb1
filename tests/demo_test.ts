/**
 * Runs `scripts/demo.ts` as a subprocess into a temp folder and checks the
 * report it prints against the shop database and the files on disk: the
 * counts in its summary, the cleaned orders, their copies, the orders that
 * must stay untouched and the restored image. The demo's own checks are not
 * trusted; every fact is read again here.
 *
 * The demo writes `demo-manifest.json` when it builds the shop, before any
 * image-agent command runs: each order's original image column value and the
 * SHA-256 of its generated file. That is the only thing taken from the demo.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const DEMO = fileURLToPath(new URL("../scripts/demo.ts", import.meta.url));
const DAY_MS = 24 * 60 * 60 * 1000;
const AFTER_DAYS = 10;

interface ManifestOrder {
  id: number;
  orderNo: string;
  image: string;
  file?: { path: string; size: number; sha256: string };
}

interface DemoRun {
  code: number;
  stdout: string;
  stderr: string;
}

async function runDemo(dir: string): Promise<DemoRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      "--allow-run",
      DEMO,
      "--dir",
      dir,
    ],
    stdin: "null",
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

async function sha256OfFile(path: string): Promise<string | null> {
  try {
    const bytes = await Deno.readFile(path);
    return createHash("sha256").update(bytes).digest("hex");
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** One number from a summary line such as `   cleaned   150 (…)`. */
function summaryNumber(summary: string, label: string): number {
  const m = summary.match(new RegExp(`^\\s+${label}\\s+(\\d+)`, "m"));
  assert.ok(m, `the summary has no "${label}" line:\n${summary}`);
  return Number(m[1]);
}

/** Regular files under `dir`, as paths relative to it. */
async function filesUnder(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(dir, prefix))) {
    const rel = prefix ? join(prefix, e.name) : e.name;
    if (e.isDirectory) out.push(...await filesUnder(dir, rel));
    else if (e.isFile) out.push(rel);
  }
  return out;
}

function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel !== "" && rel !== ".." && !rel.startsWith(".." + sep) &&
    !isAbsolute(rel);
}

Deno.test("demo builds a shop, runs image-agent on it and reports facts that hold", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "image-agent-demo-" });
  try {
    const dir = join(tmp, "shop");
    const run = await runDemo(dir);
    assert.equal(
      run.code,
      0,
      `demo exited ${run.code}\n${run.stdout}\n${run.stderr}`,
    );
    const summary = run.stdout.slice(run.stdout.lastIndexOf("Summary"));
    assert.match(run.stdout, /All checks held/);

    const manifest = JSON.parse(
      await Deno.readTextFile(join(dir, "demo-manifest.json")),
    ) as { orders: ManifestOrder[] };
    const byId = new Map(manifest.orders.map((o) => [o.id, o]));
    const root = join(dir, "hd_images");

    const db = new DatabaseSync(join(dir, "shop.db"), { readOnly: true });
    let rows: {
      id: number;
      order_no: string;
      status: string;
      hd_image: string | null;
      shipped_at: string | null;
    }[];
    try {
      rows = db.prepare(
        "SELECT id, order_no, status, hd_image, shipped_at FROM orders",
      ).all() as typeof rows;
    } finally {
      db.close();
    }

    // The restored order, from the summary.
    const restoredLine = summary.match(/^\s+restored\s+(\S+) → (.+)$/m);
    assert.ok(restoredLine, `no "restored" line in:\n${summary}`);
    const [, restoredNo, restoredPath] = restoredLine;
    const shaLine = summary.match(/^\s+SHA-256\s+matched ([0-9a-f]{64})$/m);
    assert.ok(shaLine, `no matched SHA-256 line in:\n${summary}`);

    // Sort every order by what the shop database says about it.
    const cutoff = Date.now() - AFTER_DAYS * DAY_MS;
    const eligible = rows.filter((r) =>
      r.status === "shipped" && r.shipped_at !== null &&
      Date.parse(r.shipped_at.replace(" ", "T") + "Z") < cutoff
    );
    const eligibleIds = new Set(eligible.map((r) => r.id));
    const cleanable: typeof rows = [];
    const refusedOrMissing: typeof rows = [];
    for (const r of eligible) {
      const original = byId.get(r.id)!;
      // The demo generated a file for it, inside hd_images/ (a symlink or a
      // missing file has no generated file of its own).
      const path = resolve(root, original.image);
      if (original.file && isInside(root, path)) cleanable.push(r);
      else refusedOrMissing.push(r);
    }

    assert.equal(summaryNumber(summary, "orders in the shop"), rows.length);
    assert.equal(rows.length, 300);
    assert.equal(summaryNumber(summary, "eligible"), eligible.length);
    assert.equal(summaryNumber(summary, "backed up"), cleanable.length);
    assert.equal(summaryNumber(summary, "failed"), 0);
    assert.ok(cleanable.length > 100, "most long-shipped orders are cleanable");

    // Cleaned orders: column empty, file gone, an identical copy in the NAS
    // folder. The restored order is back in place and byte-identical to its
    // copy.
    let freed = 0;
    let cleanedNow = 0;
    for (const r of cleanable) {
      const original = byId.get(r.id)!;
      freed += original.file!.size;
      const copies = await filesUnder(join(dir, "nas-backup", r.order_no));
      assert.equal(copies.length, 1, `${r.order_no}: ${copies.join(", ")}`);
      const copy = join(dir, "nas-backup", r.order_no, copies[0]);
      assert.equal(
        await sha256OfFile(copy),
        original.file!.sha256,
        `${r.order_no}: the copy differs from the original image`,
      );
      const local = join(root, original.image);
      if (r.order_no === restoredNo) {
        assert.equal(r.hd_image, original.image);
        assert.equal(resolve(restoredPath), resolve(local));
        assert.deepEqual(
          await Deno.readFile(local),
          await Deno.readFile(copy),
          "the restored file is byte for byte its copy",
        );
        assert.equal(await sha256OfFile(local), shaLine[1]);
        continue;
      }
      cleanedNow++;
      assert.ok(
        r.hd_image === null || r.hd_image === "",
        `${r.order_no}: image column still "${r.hd_image}"`,
      );
      assert.equal(await sha256OfFile(local), null, `${local} still exists`);
    }
    assert.equal(summaryNumber(summary, "cleaned"), cleanedNow + 1);
    assert.equal(summaryNumber(summary, "bytes freed"), freed);
    const copyFolders = [];
    for await (const e of Deno.readDir(join(dir, "nas-backup"))) {
      // The ledger's identity marker sits beside the order folders.
      if (e.name !== ".image-agent-ledger") copyFolders.push(e.name);
    }
    assert.equal(copyFolders.length, cleanable.length);
    assert.ok(
      rows.filter((r) => r.hd_image === null || r.hd_image === "").length ===
        cleanedNow,
      "only cleaned orders have an empty image column",
    );

    // Skipped orders: the summary's reasons add up and nothing was touched,
    // not even the files outside hd_images/ their paths point at.
    const skipped = summaryNumber(summary, "skipped");
    assert.equal(skipped, refusedOrMissing.length);
    const reasons = [...summary.matchAll(/^\s+(\d+) × (.+)$/gm)];
    assert.equal(reasons.reduce((a, m) => a + Number(m[1]), 0), skipped);
    assert.ok(reasons.some((m) => /missing/.test(m[2])), "a missing file");
    assert.ok(reasons.some((m) => /outside images\.root/.test(m[2])));
    for (const r of refusedOrMissing) {
      const original = byId.get(r.id)!;
      assert.equal(r.hd_image, original.image, `${r.order_no} was changed`);
      if (original.file) {
        assert.equal(
          await sha256OfFile(original.file.path),
          original.file.sha256,
        );
      }
      assert.ok(!copyFolders.includes(r.order_no));
    }

    // Pending, paid and recently shipped orders are exactly as built.
    const others = rows.filter((r) => !eligibleIds.has(r.id));
    assert.ok(others.some((r) => r.status === "pending"));
    assert.ok(others.some((r) => r.status === "paid"));
    assert.ok(others.some((r) => r.status === "shipped"));
    for (const r of others) {
      const original = byId.get(r.id)!;
      assert.equal(r.hd_image, original.image, `${r.order_no} was changed`);
      assert.equal(
        await sha256OfFile(join(root, original.image)),
        original.file!.sha256,
        `${r.order_no}: its image changed or vanished`,
      );
    }
    assert.ok(
      others.filter((r) => r.status === "shipped").every((r) =>
        r.shipped_at !== null
      ),
      "every shipped order has shipped_at (migrate's backfill and trigger)",
    );

    // Nothing outside the demo folder: the state is inside it.
    assert.ok((await Deno.stat(join(dir, "state"))).isDirectory);
    assert.ok((await filesUnder(join(dir, "state"))).length > 0);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("demo refuses a non-empty folder it did not build and deletes nothing", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "image-agent-demo-" });
  try {
    await Deno.writeTextFile(join(tmp, "keep.txt"), "mine");
    const run = await runDemo(tmp);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(run.stderr, /not empty/);
    assert.equal(await Deno.readTextFile(join(tmp, "keep.txt")), "mine");
    assert.deepEqual(await filesUnder(tmp), ["keep.txt"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("demo rebuilds a folder an earlier demo built", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "image-agent-demo-" });
  try {
    const dir = join(tmp, "shop");
    const first = await runDemo(dir);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    await Deno.writeTextFile(join(dir, "left-over.txt"), "old");
    const second = await runDemo(dir);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.match(second.stdout, /All checks held/);
    assert.equal(await sha256OfFile(join(dir, "left-over.txt")), null);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
