/**
 * Tools for the fault and abuse suite (tests/fault_*_test.ts): a seeded
 * random source whose seed is printed when a test fails, a shop of a few
 * hundred orders with known bytes, the real CLI as a process that can be
 * killed, and the invariants every fault test checks:
 *
 * - safe: no local image is gone unless a completed copy with the same
 *   bytes is recorded in the ledger, and every image column either still
 *   points at its file or is cleared (or about to be) with such a copy;
 * - converged: after reruns, the shop rows, the image folder, the backup
 *   folder and the ledger equal those of an undisturbed run.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { shopBackends } from "./shop_fixture.ts";
import {
  daysAgo,
  exists,
  MAIN,
  makeShop,
  type MakeShopOptions,
  noise,
  snapshotFiles,
  type TestOrder,
  type TestShop,
} from "../helpers.ts";

export const sqlite = shopBackends()[0];

/** The ledger's identity file; differs between shops by design. */
export const MARKER = ".image-agent-ledger";

/** mulberry32: small, fast, good enough to pick kill moments. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed from FAULT_SEED, or a fresh one. */
export function pickSeed(): number {
  const fixed = Deno.env.get("FAULT_SEED");
  return fixed ? Number(fixed) : Math.floor(Math.random() * 2 ** 31);
}

/** Runs `fn`; when it fails, the error says which seed reproduces it. */
export async function withSeed(
  label: string,
  fn: (seed: number, random: () => number) => Promise<void>,
): Promise<void> {
  const seed = pickSeed();
  try {
    await fn(seed, seededRandom(seed));
  } catch (err) {
    const msg =
      `${label} failed with seed ${seed}; rerun with FAULT_SEED=${seed}`;
    console.error(msg);
    throw new Error(`${msg}: ${err instanceof Error ? err.message : err}`, {
      cause: err,
    });
  }
}

export interface ShopPlan {
  orders: TestOrder[];
  /** Original bytes by order key, for every order that had a file. */
  content: Map<number, Uint8Array>;
}

/**
 * `count` orders: most shipped long ago (eligible), some recent, some not
 * shipped, a few whose file is missing; sizes 1 byte to `maxSize`, a few
 * sharing a folder, names in several scripts.
 */
export function planOrders(
  count: number,
  seed: number,
  maxSize = 48 * 1024,
): ShopPlan {
  const random = seededRandom(seed);
  const now = new Date();
  const orders: TestOrder[] = [];
  const content = new Map<number, Uint8Array>();
  const names = ["猫", "dog", "Кошка", "قطة", "chien é", "πάπια"];
  for (let i = 1; i <= count; i++) {
    const r = random();
    const status = r < 0.85 ? "shipped" : r < 0.92 ? "processing" : "pending";
    const age = random() < 0.85 ? 20 + Math.floor(random() * 100) : 2;
    const folder = `2026-${String(1 + (i % 6)).padStart(2, "0")}`;
    const image = `${folder}/${names[i % names.length]} ${i}.png`;
    const missing = random() < 0.03;
    const size = 1 + Math.floor(random() * maxSize);
    const bytes = noise(size, seed + i);
    if (!missing) content.set(i, bytes);
    orders.push({
      key: i,
      orderNo: `P-${String(i).padStart(4, "0")}`,
      status,
      image,
      shippedAt: status === "pending" ? null : daysAgo(age, now),
      content: missing ? undefined : bytes,
    });
  }
  return { orders, content };
}

export async function makePlannedShop(
  plan: ShopPlan,
  options: Omit<MakeShopOptions, "orders"> = {},
): Promise<TestShop> {
  return await makeShop(sqlite, { ...options, orders: plan.orders });
}

export interface CliProcess {
  child: Deno.ChildProcess;
  /** Resolves with the exit status and everything written to stderr. */
  done: Promise<{ code: number; signal: string | null; stderr: string }>;
  /** Resolves when stderr has shown a line matching `re` (or the end). */
  waitFor(re: RegExp): Promise<boolean>;
  /** What stderr has shown so far. */
  text(): string;
}

/** Starts the real CLI as a process that a test may signal or kill. */
export function startCli(
  args: string[],
  env: Record<string, string> = {},
): CliProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-cron", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const waiters: { re: RegExp; resolve: (ok: boolean) => void }[] = [];
  const pump = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stderr) {
      text += dec.decode(chunk, { stream: true });
      for (const w of [...waiters]) {
        if (w.re.test(text)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(true);
        }
      }
    }
    for (const w of waiters.splice(0)) w.resolve(false);
  })();
  const done = (async () => {
    const status = await child.status;
    await pump;
    return { code: status.code, signal: status.signal, stderr: text };
  })();
  return {
    child,
    done,
    text: () => text,
    waitFor(re) {
      if (re.test(text)) return Promise.resolve(true);
      return new Promise((resolve) => waiters.push({ re, resolve }));
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The ledger's backups rows, without ids and times, in order-key order. */
export function ledgerRows(shop: TestShop): Record<string, unknown>[] {
  const file = join(shop.stateDir, "ledger.db");
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    return db.prepare(
      `SELECT order_key, order_no, image, path, target, remote_path, state,
         reason, size, sha256, md5, verified_by, local_state, upload_state
       FROM backups ORDER BY CAST(order_key AS INTEGER), image`,
    ).all().map((r) => ({
      ...r,
      path: String(r.path).replace(shop.dir, "<dir>"),
      // A copy found complete after a crash is verified another way (the
      // existing copy hashed, a Baidu rapid upload): verified all the same.
      verified_by: r.verified_by === null ? null : "verified",
    }));
  } finally {
    db.close();
  }
}

/**
 * Per order, the kinds of its events, repeats collapsed, reuse counted as a
 * backup and failed attempts left out (a retry after a fault is history,
 * not a different end).
 */
export function eventKinds(shop: TestShop): Map<string, string[]> {
  const db = new DatabaseSync(join(shop.stateDir, "ledger.db"), {
    readOnly: true,
  });
  try {
    const out = new Map<string, string[]>();
    for (
      const r of db.prepare(`SELECT order_no, kind FROM events ORDER BY id`)
        .all()
    ) {
      const kind = r.kind === "reused" ? "backed_up" : String(r.kind);
      if (kind === "backup_failed") continue;
      const list = out.get(String(r.order_no)) ?? [];
      if (list[list.length - 1] !== kind) list.push(kind);
      out.set(String(r.order_no), list);
    }
    return out;
  } finally {
    db.close();
  }
}

export function runStatuses(shop: TestShop): string[] {
  const db = new DatabaseSync(join(shop.stateDir, "ledger.db"), {
    readOnly: true,
  });
  try {
    return db.prepare(`SELECT status FROM runs ORDER BY id`).all().map((r) =>
      String(r.status)
    );
  } finally {
    db.close();
  }
}

interface LedgerCopy {
  state: string;
  localState: string;
  remotePath: string | null;
  sha256: string | null;
}

function copiesByKey(shop: TestShop): Map<string, LedgerCopy[]> {
  const out = new Map<string, LedgerCopy[]>();
  const file = join(shop.stateDir, "ledger.db");
  try {
    Deno.statSync(file);
  } catch {
    return out; // killed before the ledger was made
  }
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    const hasTable = db.prepare(
      `SELECT 1 FROM sqlite_master WHERE name = 'backups'`,
    ).get();
    if (!hasTable) return out;
    for (
      const r of db.prepare(
        `SELECT order_key, state, local_state, remote_path, sha256 FROM backups`,
      ).all()
    ) {
      const list = out.get(String(r.order_key)) ?? [];
      list.push({
        state: String(r.state),
        localState: String(r.local_state),
        remotePath: r.remote_path === null ? null : String(r.remote_path),
        sha256: r.sha256 === null ? null : String(r.sha256),
      });
      out.set(String(r.order_key), list);
    }
  } finally {
    db.close();
  }
  return out;
}

/**
 * The safety invariant, true at every moment, even right after a SIGKILL:
 * an image whose file is gone has a completed copy with the very same bytes
 * (read through `readCopy`), and its column is either unchanged or cleared
 * with that copy recorded.
 */
export async function assertSafe(
  shop: TestShop,
  plan: ShopPlan,
  readCopy: (remotePath: string) => Promise<Uint8Array | null>,
  where: string,
  options: {
    /**
     * The shop's app may have written a new file at a path the agent had
     * just cleaned (a race no agent can close): then the column may be
     * empty beside a present file, as long as the older bytes have a copy.
     */
    rewritten?: boolean;
  } = {},
): Promise<void> {
  const copies = copiesByKey(shop);
  const rows = new Map(
    (await shop.fixture.orders()).map((o) => [o.key, o] as const),
  );
  for (const o of plan.orders) {
    const original = plan.content.get(o.key);
    if (!original) continue;
    const local = join(shop.root, o.image!);
    const column = rows.get(o.key)!.image;
    const present = await exists(local);
    if (present) {
      assert.deepEqual(
        await Deno.readFile(local),
        original,
        `${where}: ${o.orderNo}: the local file changed`,
      );
      const completed = (copies.get(String(o.key)) ?? []).some((c) =>
        c.state === "completed"
      );
      if (!(options.rewritten && !column && completed)) {
        assert.equal(
          column,
          o.image,
          `${where}: ${o.orderNo}: column changed (ledger: ${
            JSON.stringify(copies.get(String(o.key)))
          })`,
        );
      }
      continue;
    }
    const done = (copies.get(String(o.key)) ?? []).filter((c) =>
      c.state === "completed" && c.remotePath
    );
    assert.ok(
      done.length > 0,
      `${where}: ${o.orderNo}: image deleted without a completed backup`,
    );
    const bytes = await readCopy(done[0].remotePath!);
    assert.ok(bytes, `${where}: ${o.orderNo}: the recorded copy is missing`);
    assert.deepEqual(bytes, original, `${where}: ${o.orderNo}: copy differs`);
    // Between deleting the file and clearing the column the column may
    // still point at it: the copy above is what makes that safe.
    assert.ok(
      column === null || column === "" || column === o.image,
      `${where}: ${o.orderNo}: column holds "${column}"`,
    );
  }
}

/** A reader of copies in a local backup folder. */
export function localCopies(
  shop: TestShop,
): (remotePath: string) => Promise<Uint8Array | null> {
  return async (p) => {
    try {
      return await Deno.readFile(join(shop.backupDir, p));
    } catch {
      return null;
    }
  };
}

/** Files under `dir`, except the ledger identity file. */
export async function filesOf(dir: string): Promise<Map<string, Uint8Array>> {
  const files = await snapshotFiles(dir);
  files.delete(MARKER);
  return files;
}

/** Two shops reached the same end: rows, image and backup files, ledger. */
export async function assertSameEnd(
  disturbed: TestShop,
  calm: TestShop,
  where: string,
): Promise<void> {
  const strip = async (shop: TestShop) =>
    (await shop.fixture.orders()).map((r) => ({
      ...r,
      image: r.image?.replace(shop.dir, "<dir>") ?? null,
    }));
  assert.deepEqual(
    await strip(disturbed),
    await strip(calm),
    `${where}: shop rows differ`,
  );
  for (
    const [label, a, b] of [
      ["image folder", disturbed.root, calm.root],
      ["backup folder", disturbed.backupDir, calm.backupDir],
    ] as const
  ) {
    const x = await filesOf(a);
    const y = await filesOf(b);
    const extra = [...x.keys()].filter((k) => !y.has(k));
    const lacking = [...y.keys()].filter((k) => !x.has(k));
    assert.deepEqual(
      { extra, lacking },
      { extra: [], lacking: [] },
      `${where}: ${label} file names differ`,
    );
    for (const [k, v] of y) {
      assert.deepEqual(x.get(k), v, `${where}: ${label}: ${k} differs`);
    }
  }
  const la = ledgerRows(disturbed);
  const lb = ledgerRows(calm);
  assert.equal(la.length, lb.length, `${where}: ledger row count`);
  for (let i = 0; i < lb.length; i++) {
    assert.deepEqual(la[i], lb[i], `${where}: ledger row ${i}`);
  }
  const ea = eventKinds(disturbed);
  const eb = eventKinds(calm);
  for (const [orderNo, kinds] of eb) {
    assert.deepEqual(
      ea.get(orderNo),
      kinds,
      `${where}: ${orderNo}: event history`,
    );
  }
}

/** True when this process may mount file systems (root in a privileged box). */
export async function canMount(): Promise<boolean> {
  if (Deno.build.os !== "linux" || Deno.uid() !== 0) return false;
  const dir = await Deno.makeTempDir({ prefix: "image-agent-mount-" });
  try {
    const r = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!r.success) return false;
    await umount(dir);
    return true;
  } catch {
    return false;
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}

export async function mount(args: string[]): Promise<void> {
  const r = await new Deno.Command("mount", { args, stderr: "piped" })
    .output();
  if (!r.success) {
    throw new Error(
      `mount ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`,
    );
  }
}

export async function umount(dir: string): Promise<void> {
  await new Deno.Command("umount", { args: ["-l", dir], stderr: "null" })
    .output();
}
