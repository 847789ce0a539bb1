/**
 * `deno task demo`: builds a sample pet-portrait shop in a fresh folder and
 * walks the real image-agent command line through it: migrate, a dry run, a
 * full run to a local "NAS" folder, status, a restore, the order's history
 * and the run history. It prints a numbered report a person can follow and
 * checks every claim against the shop database and the files on disk.
 *
 * The CLI is always run as a subprocess (`deno run -A main.ts ...`), never
 * imported, so the demo shows exactly what an operator would see.
 *
 * Nothing outside the demo folder is touched: the config puts the shop, the
 * images, the backup folder and the agent's state inside it. The folder is
 * deleted and rebuilt only when it holds the marker file an earlier demo
 * wrote; any other non-empty folder is refused.
 *
 * Usage: deno task demo [--dir PATH]
 * Exit codes: 0 every step did what it should; 1 a step failed or a check
 * did not hold; 2 bad usage or a folder the demo may not use.
 */

import { DatabaseSync } from "node:sqlite";
import { createHash } from "node:crypto";
import { deflateSync } from "node:zlib";
import { parseArgs } from "node:util";
import { basename, dirname, isAbsolute, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const MARKER = ".image-agent-demo";
const MARKER_TEXT = "Built by `deno task demo` of image-agent.\n" +
  "The next demo run may delete and rebuild this folder.\n";
const MANIFEST = "demo-manifest.json";
const REPO = fileURLToPath(new URL("..", import.meta.url));
const SEED = 20260214;
const DAY_MS = 24 * 60 * 60 * 1000;
const AFTER_DAYS = 10;

const HELP = `Usage: deno task demo [--dir PATH]

Builds a sample pet-portrait shop (SQLite database, 300 orders, HD images)
in a fresh folder and runs image-agent on it: migrate, a dry run, a full run
to a local backup folder, status, a restore, log and runs.

Options:
  --dir PATH   the demo folder (default ./demo-shop). It must be new, empty,
               or a folder an earlier demo built (it holds ${MARKER});
               anything else is refused, never deleted.
  -h, --help   this help
`;

/** A problem that ends the demo with a message and an exit code. */
class DemoError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = "DemoError";
    this.exitCode = exitCode;
  }
}

type Category =
  | "old" // shipped 30-60 days ago: backed up and cleaned
  | "recent" // shipped 2-5 days ago: kept
  | "shipped-now" // shipped during the demo; the trigger stamps it
  | "pending"
  | "paid"
  | "hostile"; // shipped long ago, but its path must be refused or is missing

interface DemoOrder {
  id: number;
  orderNo: string;
  customer: string;
  status: string;
  category: Category;
  /** The image column as the shop wrote it. */
  image: string;
  createdAt: string;
  /** Days before now the order shipped (old, recent and hostile only). */
  shippedDaysAgo?: number;
  /** What the hostile row shows. */
  note?: string;
  /** The generated file, when there is one. */
  file?: { path: string; size: number; sha256: string };
}

// ---------------------------------------------------------------- helpers

/** mulberry32: a small seeded generator, so every demo shop is the same. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sqlTime(date: Date): string {
  return date.toISOString().slice(0, 19).replace("T", " ");
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function sha256OfFile(path: string): Promise<string | null> {
  try {
    return sha256(await Deno.readFile(path));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, body.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(body, 8);
  view.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

/**
 * A real, decodable greyscale PNG of about `size` bytes: 256 pixels wide,
 * noisy rows stored without compression so the size is predictable.
 */
function makePng(size: number, random: () => number): Uint8Array {
  const width = 256;
  const height = Math.max(1, Math.round((size - 120) / (width + 1)));
  const raw = new Uint8Array(height * (width + 1));
  for (let y = 0; y < height; y++) {
    const row = y * (width + 1);
    raw[row] = 0; // filter: none
    for (let x = 0; x < width; x += 4) {
      const r = Math.floor(random() * 4294967296);
      raw[row + 1 + x] = r & 0xff;
      raw[row + 2 + x] = (r >>> 8) & 0xff;
      raw[row + 3 + x] = (r >>> 16) & 0xff;
      raw[row + 4 + x] = (r >>> 24) & 0xff;
    }
  }
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr.set([8, 0, 0, 0, 0], 8); // 8-bit greyscale
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", deflateSync(raw, { level: 0 })),
    pngChunk("IEND", new Uint8Array()),
  ];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

// --------------------------------------------------------- the demo folder

/** Creates the demo folder, or empties one an earlier demo built. */
async function prepareFolder(dir: string): Promise<void> {
  let info: Deno.FileInfo | null = null;
  try {
    info = await Deno.lstat(dir);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  if (info) {
    if (!info.isDirectory) {
      throw new DemoError(
        `Cannot use "${dir}" for the demo: it is not a folder (a symlink or a file); pass --dir with a new folder`,
        2,
      );
    }
    const marker = await Deno.readTextFile(join(dir, MARKER)).catch(() => "");
    if (marker === MARKER_TEXT) {
      await Deno.remove(dir, { recursive: true });
    } else {
      for await (const _ of Deno.readDir(dir)) {
        throw new DemoError(
          `Cannot use "${dir}" for the demo: it is not empty and an earlier demo did not build it (no ${MARKER} file); nothing was deleted. Pass --dir with a new or empty folder`,
          2,
        );
      }
    }
  }
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, MARKER), MARKER_TEXT);
}

// ------------------------------------------------------------ sample shop

const CUSTOMERS =
  "张三,李四,王小明,赵丽,陈静,刘洋,杨帆,黄蕾,周杰,吴敏,林晓,郑爽,Emma Li,Tom Wang"
    .split(",");
const PETS = ["猫", "狗", "兔子", "鹦鹉", "仓鼠", "柯基", "cat"];
const PET_NAMES = "橘子,豆豆,旺财,雪球,可乐,布丁,团子,Mochi,Biscuit,小黑".split(
  ",",
);
const STYLES = ["油画 oil", "水彩 watercolor", "素描 sketch"];

const COUNTS: Record<Exclude<Category, "hostile">, number> = {
  old: 150,
  recent: 60,
  "shipped-now": 1,
  pending: 45,
  paid: 40,
};

interface Shop {
  orders: DemoOrder[];
  totalBytes: number;
  symlinked: boolean;
}

/** Writes shop.db, the image files and the rows that must be skipped. */
async function buildShop(dir: string, now: Date): Promise<Shop> {
  const random = seededRandom(SEED);
  const pick = <T>(list: T[]) => list[Math.floor(random() * list.length)];
  const between = (lo: number, hi: number) => lo + random() * (hi - lo);

  const categories: Category[] = [];
  for (const [c, n] of Object.entries(COUNTS)) {
    for (let i = 0; i < n; i++) categories.push(c as Category);
  }
  for (let i = 0; i < 4; i++) categories.push("hostile");
  for (let i = categories.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [categories[i], categories[j]] = [categories[j], categories[i]];
  }

  const root = join(dir, "hd_images");
  const outside = join(dir, "outside-images");
  await Deno.mkdir(root, { recursive: true });
  await Deno.mkdir(outside, { recursive: true });
  await Deno.mkdir(join(dir, "nas-backup"), { recursive: true });
  await Deno.mkdir(join(dir, "state"), { recursive: true });

  const used = new Set<string>();
  const orders: DemoOrder[] = [];
  let totalBytes = 0;
  let hostileSeen = 0;
  let symlinked = false;
  for (let i = 0; i < categories.length; i++) {
    const id = i + 1;
    const category = categories[i];
    const customer = pick(CUSTOMERS);
    let shippedDaysAgo: number | undefined;
    let createdDaysAgo: number;
    if (category === "old" || category === "hostile") {
      shippedDaysAgo = between(30, 60);
      createdDaysAgo = shippedDaysAgo + between(3, 12);
    } else if (category === "recent") {
      shippedDaysAgo = between(2, 5);
      createdDaysAgo = shippedDaysAgo + between(3, 12);
    } else {
      createdDaysAgo = between(0, 3);
    }
    const created = new Date(now.getTime() - createdDaysAgo * DAY_MS);
    const month = created.toISOString().slice(0, 7);
    const status = category === "pending"
      ? "pending"
      : category === "paid" || category === "shipped-now"
      ? "paid"
      : "shipped";
    const order: DemoOrder = {
      id,
      orderNo: `PP-${String(id).padStart(4, "0")}`,
      customer,
      status,
      category,
      image: "",
      createdAt: sqlTime(created),
      shippedDaysAgo,
    };

    if (category === "hostile") {
      hostileSeen++;
      const receipt = join(outside, "订单收据 receipt.png");
      if (hostileSeen === 1) {
        order.image = "../outside-images/订单收据 receipt.png";
        order.note = "a path with .. that leaves hd_images/";
        await writeImage(receipt, 24 * 1024, random, order);
      } else if (hostileSeen === 2) {
        const abs = join(outside, "客户资料 customer.png");
        order.image = abs;
        order.note = "an absolute path outside hd_images/";
        await writeImage(abs, 30 * 1024, random, order);
      } else if (hostileSeen === 3) {
        order.image = `${month}/丢失的图 missing.png`;
        order.note = "the file is missing";
      } else {
        order.image = `${month}/外链 symlink.png`;
        await Deno.mkdir(join(root, month), { recursive: true });
        try {
          await Deno.symlink(
            relative(join(root, month), receipt),
            join(root, order.image),
          );
          symlinked = true;
          order.note = "a symlink inside hd_images/ pointing out of it";
        } catch {
          order.image = `${month}/也丢失了 also missing.png`;
          order.note = "the file is missing (this system made no symlink)";
        }
      }
      orders.push(order);
      continue;
    }

    const style = random() < 0.35 ? `${pick(STYLES)}/` : "";
    const stem = `${customer}的${pick(PETS)} ${pick(PET_NAMES)}`;
    let name = `${month}/${style}${stem}.png`;
    for (let n = 2; used.has(name); n++) {
      name = `${month}/${style}${stem} (${n}).png`;
    }
    used.add(name);
    order.image = name;
    const size = Math.round(between(20, 200) * 1024);
    totalBytes += await writeImage(join(root, name), size, random, order);
    orders.push(order);
  }

  const db = new DatabaseSync(join(dir, "shop.db"));
  try {
    db.exec(`CREATE TABLE orders (
      id INTEGER PRIMARY KEY,
      order_no TEXT NOT NULL UNIQUE,
      customer TEXT NOT NULL,
      status TEXT NOT NULL,
      hd_image TEXT,
      created_at TEXT NOT NULL
    )`);
    const insert = db.prepare(
      `INSERT INTO orders (id, order_no, customer, status, hd_image, created_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
    );
    db.exec("BEGIN");
    for (const o of orders) {
      insert.run(o.id, o.orderNo, o.customer, o.status, o.image, o.createdAt);
    }
    db.exec("COMMIT");
  } finally {
    db.close();
  }
  return { orders, totalBytes, symlinked };
}

async function writeImage(
  path: string,
  size: number,
  random: () => number,
  order: DemoOrder,
): Promise<number> {
  const bytes = makePng(size, random);
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeFile(path, bytes);
  order.file = { path, size: bytes.length, sha256: sha256(bytes) };
  return bytes.length;
}

/** The demo's config: every path relative, so inside the demo folder. */
function demoConfig(): Record<string, unknown> {
  return {
    database: { driver: "sqlite", path: "shop.db" },
    orders: {
      table: "orders",
      key: "id",
      orderNo: "order_no",
      status: "status",
      hdImage: "hd_image",
      shippedAt: "shipped_at",
      shippedStatuses: ["shipped"],
    },
    images: { root: "hd_images" },
    cleanup: { afterDays: AFTER_DAYS },
    backup: {
      target: "local",
      required: true,
      local: { dir: "nas-backup" },
    },
    state: { dir: "state" },
    schedule: { cron: "0 2 * * *", timezone: "Asia/Shanghai" },
  };
}

// -------------------------------------------------------------- reporting

class Report {
  step = 0;
  problems: string[] = [];

  heading(title: string, what: string) {
    this.step++;
    console.log(`\n${this.step}. ${title}`);
    for (const line of what.split("\n")) console.log(`   ${line}`);
  }

  show(text: string, max = 14) {
    const lines = text.replace(/\n+$/, "").split("\n").filter((l) => l !== "");
    const shown = lines.length <= max ? lines : [
      ...lines.slice(0, max - 4),
      `… ${lines.length - (max - 1)} more lines …`,
      ...lines.slice(-3),
    ];
    for (const l of shown) console.log(`     ${l}`);
  }

  check(ok: boolean, message: string) {
    console.log(`   ${ok ? "ok " : "NOT OK"} ${message}`);
    if (!ok) this.problems.push(message);
  }
}

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real image-agent CLI in the demo folder and shows its output. */
async function cli(
  report: Report,
  dir: string,
  args: string[],
  options: { max?: number; quiet?: boolean } = {},
): Promise<CliResult> {
  const main = join(REPO, "main.ts");
  const denoJson = join(REPO, "deno.json");
  const shorter = (p: string) => {
    const r = relative(dir, p);
    return r.length < p.length ? r : p;
  };
  const full = [...args, "--config", join(dir, "image-agent.json")];
  const shown = [
    "deno",
    "run",
    "-A",
    "--config",
    shorter(denoJson),
    shorter(main),
    ...args,
    "--config",
    "image-agent.json",
  ].map((a) => /[\s'"]/.test(a) ? `'${a}'` : a).join(" ");
  console.log(`   $ ${shown}`);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", denoJson, main, ...full],
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const result = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr)
      // The log stamps each line with UTC time when no terminal watches;
      // the report drops the stamp to keep lines short.
      .replace(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ /gm, ""),
  };
  if (result.code !== 0) {
    report.show(result.stderr + result.stdout, 40);
    throw new DemoError(
      `"image-agent ${args.join(" ")}" exited ${result.code}, expected 0`,
    );
  }
  if (!options.quiet) {
    if (result.stderr.trim() !== "") {
      console.log("   log (stderr):");
      report.show(result.stderr, options.max);
    }
    if (result.stdout.trim() !== "") {
      console.log("   output (stdout):");
      report.show(oneLineJson(result.stdout), options.max);
    }
  }
  return result;
}

/** A JSON result shown on one line, to keep the report short. */
function oneLineJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return text;
  }
}

function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new DemoError(`${what} did not print one JSON object: ${text}`);
  }
}

interface PassSummary {
  eligible: number;
  backedUp: number;
  cleaned: number;
  failed: number;
  skipped: number;
  freedBytes: number;
  dryRun: boolean;
}

// -------------------------------------------------------------- checking

function readImages(dir: string): Map<number, string> {
  const db = new DatabaseSync(join(dir, "shop.db"), { readOnly: true });
  try {
    const rows = db.prepare("SELECT id, hd_image FROM orders").all() as {
      id: number;
      hd_image: string | null;
    }[];
    return new Map(rows.map((r) => [r.id, r.hd_image ?? ""]));
  } finally {
    db.close();
  }
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) n += await countFiles(join(dir, e.name));
    else n++;
  }
  return n;
}

function copyPath(dir: string, o: DemoOrder): string {
  return join(dir, "nas-backup", o.orderNo, basename(o.image));
}

/** Compares every order's row, file and copy with what should be there. */
async function checkAfterRun(
  report: Report,
  dir: string,
  shop: Shop,
  summary: PassSummary,
): Promise<void> {
  const images = readImages(dir);
  const old = shop.orders.filter((o) => o.category === "old");
  const kept = shop.orders.filter((o) => o.category !== "old");
  let cleanedOk = 0;
  let copiesOk = 0;
  const bad: string[] = [];
  for (const o of old) {
    const gone = await sha256OfFile(o.file!.path) === null;
    if (images.get(o.id) === "" && gone) cleanedOk++;
    else bad.push(`${o.orderNo} was not cleaned`);
    if (await sha256OfFile(copyPath(dir, o)) === o.file!.sha256) copiesOk++;
    else bad.push(`${o.orderNo} has no identical copy in nas-backup/`);
  }
  let keptOk = 0;
  for (const o of kept) {
    const same = images.get(o.id) === o.image &&
      (!o.file || await sha256OfFile(o.file.path) === o.file.sha256);
    if (same) keptOk++;
    else bad.push(`${o.orderNo} (${o.category}) was changed`);
  }
  const freed = old.reduce((a, o) => a + o.file!.size, 0);
  const hostile = shop.orders.filter((o) => o.category === "hostile").length;
  report.check(
    cleanedOk === old.length,
    `${cleanedOk} of ${old.length} long-shipped orders have an empty image column and no local file`,
  );
  report.check(
    copiesOk === old.length,
    `${copiesOk} copies in nas-backup/ are byte for byte the generated images (SHA-256)`,
  );
  report.check(
    keptOk === kept.length,
    `${keptOk} of ${kept.length} other orders (recent, pending, paid, skipped) are untouched`,
  );
  report.check(
    summary.cleaned === old.length && summary.backedUp === old.length &&
      summary.skipped === hostile && summary.failed === 0 &&
      summary.freedBytes === freed,
    `the run's counts match the shop: ${old.length} backed up and cleaned, ${hostile} skipped, ${freed} bytes freed`,
  );
  for (const b of bad.slice(0, 10)) console.log(`        ${b}`);
}

// ------------------------------------------------------------------ main

async function demo(dir: string): Promise<Report> {
  const report = new Report();
  const now = new Date();
  console.log("image-agent demo: a pet-portrait shop, end to end");
  console.log(`Demo folder: ${dir}`);
  console.log(`image-agent: ${join(REPO, "main.ts")} (run as a subprocess)`);

  report.heading(
    "Build the sample shop (no CLI yet)",
    `A SQLite shop.db with an orders table and an HD image per order under
hd_images/ (nested month/style folders, Chinese names with spaces).`,
  );
  await prepareFolder(dir);
  const shop = await buildShop(dir, now);
  const by = (c: Category) => shop.orders.filter((o) => o.category === c);
  console.log(
    `     ${shop.orders.length} orders: ${
      by("old").length
    } shipped long ago, ` +
      `${by("recent").length} shipped recently, ${
        by("pending").length
      } pending, ` +
      `${by("paid").length + 1} paid (one ships during the demo), ` +
      `${by("hostile").length} shipped with a bad image path`,
  );
  console.log(
    `     ${
      shop.orders.filter((o) => o.file && o.category !== "hostile").length
    } PNG files, ${mib(shop.totalBytes)} (seed ${SEED}), for example:`,
  );
  for (const o of by("old").slice(0, 2)) {
    console.log(`       ${o.orderNo}  hd_images/${o.image}`);
  }
  console.log("     rows that must be skipped:");
  for (const o of by("hostile")) {
    console.log(`       ${o.orderNo}  ${o.note}: ${o.image}`);
  }
  await Deno.writeTextFile(
    join(dir, MANIFEST),
    JSON.stringify(
      { seed: SEED, builtAt: now.toISOString(), ...shop },
      null,
      2,
    ),
  );

  report.heading(
    "Write the config",
    `image-agent.json: SQLite shop, images under hd_images/, clean up ${AFTER_DAYS} days
after shipping, back up to the local folder nas-backup/, state (ledger,
lock) in state/. Relative paths resolve against the config's folder.`,
  );
  const config = demoConfig();
  await Deno.writeTextFile(
    join(dir, "image-agent.json"),
    JSON.stringify(config, null, 2) + "\n",
  );
  report.show(JSON.stringify(config), 3);

  report.heading(
    "image-agent migrate",
    `Adds orders.shipped_at, a trigger that stamps it when an order becomes
"shipped", stamps orders already shipped with the migration time, adds an index.`,
  );
  await cli(report, dir, ["migrate"]);

  report.heading(
    "Pretend time has passed (the shop's app would have stamped these)",
    `The agent counts ${AFTER_DAYS} days from shipped_at, and migrate just stamped every
shipped order with "now": on a real server nothing is eligible for ${AFTER_DAYS} days.
The demo writes the dates the shop would have recorded instead: 30-60 days
ago for orders shipped long ago, 2-5 days ago for recent ones. Then it
ships one paid order the way the shop does (UPDATE status), and the
trigger migrate installed stamps it.`,
  );
  const shippedNow = by("shipped-now")[0];
  {
    const db = new DatabaseSync(join(dir, "shop.db"));
    try {
      const stamp = db.prepare("UPDATE orders SET shipped_at = ? WHERE id = ?");
      db.exec("BEGIN");
      for (const o of shop.orders) {
        if (o.shippedDaysAgo === undefined) continue;
        const at = new Date(now.getTime() - o.shippedDaysAgo * DAY_MS);
        stamp.run(sqlTime(at), o.id);
      }
      db.exec("COMMIT");
      db.prepare("UPDATE orders SET status = 'shipped' WHERE id = ?")
        .run(shippedNow.id);
      shippedNow.status = "shipped";
      const row = db.prepare("SELECT shipped_at FROM orders WHERE id = ?")
        .get(shippedNow.id) as { shipped_at: string | null };
      const longAgo = by("old").length + by("hostile").length;
      console.log(
        `     $ UPDATE orders SET shipped_at = <30-60 days ago> … (${longAgo} orders)`,
      );
      console.log(
        `     $ UPDATE orders SET shipped_at = <2-5 days ago> … (${
          by("recent").length
        } orders)`,
      );
      console.log(
        `     $ UPDATE orders SET status = 'shipped' WHERE id = ${shippedNow.id}`,
      );
      report.check(
        row.shipped_at !== null,
        `the trigger stamped ${shippedNow.orderNo}: shipped_at = ${row.shipped_at} (UTC)`,
      );
    } finally {
      db.close();
    }
  }

  report.heading(
    "image-agent run --dry-run",
    "Plans the nightly pass and says what it would do; changes nothing.",
  );
  const filesBefore = await countFiles(join(dir, "hd_images"));
  const dry = parseJson<PassSummary>(
    (await cli(report, dir, ["run", "--dry-run", "--json"], { max: 10 }))
      .stdout,
    "run --dry-run --json",
  );
  const imagesAfterDry = readImages(dir);
  report.check(
    await countFiles(join(dir, "hd_images")) === filesBefore &&
      await countFiles(join(dir, "nas-backup")) === 0 &&
      shop.orders.every((o) => imagesAfterDry.get(o.id) === o.image),
    `nothing changed: the same ${filesBefore} files and links in hd_images/, no copy in nas-backup/, every image column as before`,
  );

  report.heading(
    "image-agent run",
    `The nightly job: for each eligible order, copy the image to nas-backup/,
verify the copy by SHA-256, record it, delete the local file, empty the
image column. Bad paths and missing files are skipped with a reason.`,
  );
  const started = performance.now();
  const run = parseJson<PassSummary>(
    (await cli(report, dir, ["run", "--json"], { max: 12 })).stdout,
    "run --json",
  );
  console.log(
    `   took ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s; checked against shop.db and the disk:`,
  );
  await checkAfterRun(report, dir, shop, run);
  report.check(
    dry.eligible === run.eligible && dry.backedUp === run.backedUp &&
      dry.cleaned === run.cleaned && dry.skipped === run.skipped,
    `the dry run announced the same counts (${dry.eligible} eligible, ${dry.cleaned} to clean, ${dry.skipped} to skip)`,
  );

  report.heading(
    "image-agent status",
    "Counts from the agent's ledger (state/), then the same as JSON.",
  );
  await cli(report, dir, ["status"]);
  const status = parseJson<{
    backups: Record<string, number>;
    cleanedOrders: number;
    freedBytes: number;
  }>(
    (await cli(report, dir, ["status", "--json"])).stdout,
    "status --json",
  );
  report.check(
    status.cleanedOrders === run.cleaned &&
      status.freedBytes === run.freedBytes &&
      status.backups.completed === run.backedUp,
    `status agrees with the run: ${status.backups.completed} completed, ${status.cleanedOrders} cleaned orders`,
  );

  const chosen =
    by("old").find((o) =>
      /\s/.test(o.image) && /[\u4e00-\u9fff]/.test(o.image) &&
      o.image.split("/").length > 2
    ) ?? by("old")[0];
  report.heading(
    `image-agent restore ${chosen.orderNo}`,
    `A customer wants a reprint: bring the image back from nas-backup/ to its
original path, check its SHA-256 against the ledger, refill the column.`,
  );
  const restore = parseJson<{
    restored: number;
    orders: { status: string; path?: string; sha256?: string }[];
  }>(
    (await cli(report, dir, ["restore", chosen.orderNo, "--json"])).stdout,
    "restore --json",
  );
  const restoredPath = join(dir, "hd_images", chosen.image);
  const restoredSha = await sha256OfFile(restoredPath);
  const restoredMatch = restoredSha === chosen.file!.sha256 &&
    restore.orders[0]?.sha256 === chosen.file!.sha256;
  report.check(
    restore.restored === 1 && restoredMatch,
    `hd_images/${chosen.image} is back; its SHA-256 ${
      restoredSha?.slice(0, 16)
    }… equals the generated original and the ledger's`,
  );
  report.check(
    readImages(dir).get(chosen.id) === chosen.image,
    `the image column of ${chosen.orderNo} says "${chosen.image}" again`,
  );

  report.heading(
    `image-agent log --order ${chosen.orderNo}`,
    "That order's history, newest first: planned, backed up, deleted, cleared, restored.",
  );
  await cli(report, dir, ["log", "--order", chosen.orderNo]);

  report.heading(
    "image-agent runs",
    "Every recorded run with its trigger, times, outcome and counts.",
  );
  await cli(report, dir, ["runs"]);

  report.heading(
    "Summary",
    `Counts from "run --json", the order count from shop.db, skip reasons
from the ledger:`,
  );
  const log = parseJson<{ events: { kind: string; detail: string | null }[] }>(
    (await cli(report, dir, ["log", "--json", "--limit", "10000"], {
      quiet: true,
    })).stdout,
    "log --json",
  );
  const reasons = new Map<string, number>();
  for (const e of log.events.filter((e) => e.kind === "skipped")) {
    const reason = e.detail ?? "(no reason)";
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }
  const orderCount = readImages(dir).size;
  const rows: [string, string][] = [
    ["orders in the shop", String(orderCount)],
    [
      "eligible",
      `${run.eligible} (shipped over ${AFTER_DAYS} days ago, with an image)`,
    ],
    ["backed up", String(run.backedUp)],
    ["cleaned", `${run.cleaned} (file deleted, image column emptied)`],
    ["failed", String(run.failed)],
    ["skipped", String(run.skipped)],
  ];
  for (const [k, v] of rows) console.log(`   ${k.padEnd(20)} ${v}`);
  for (const [reason, n] of [...reasons].sort()) {
    console.log(`     ${n} × ${reason}`);
  }
  console.log(
    `   ${"bytes freed".padEnd(20)} ${run.freedBytes} (${mib(run.freedBytes)})`,
  );
  console.log(
    `   ${"restored".padEnd(20)} ${chosen.orderNo} → ${restoredPath}`,
  );
  console.log(
    `   ${"SHA-256".padEnd(20)} ${
      restoredMatch ? "matched" : "DID NOT MATCH"
    } ${restoredSha ?? "(no file)"}`,
  );
  report.check(
    [...reasons.values()].reduce((a, n) => a + n, 0) === run.skipped,
    "the ledger's skip reasons add up to the run's skipped count",
  );
  return report;
}

if (import.meta.main) {
  let code = 0;
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        dir: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      console.log(HELP);
    } else {
      const dir = values.dir === undefined
        ? join(Deno.cwd(), "demo-shop")
        : isAbsolute(values.dir)
        ? values.dir
        : join(Deno.cwd(), values.dir);
      const report = await demo(dir);
      if (report.problems.length > 0) {
        console.log(`\n${report.problems.length} check(s) did not hold:`);
        for (const p of report.problems) console.log(`  - ${p}`);
        code = 1;
      } else {
        console.log(`\nAll checks held. Look around: ${dir}`);
      }
    }
  } catch (err) {
    if (err instanceof DemoError) {
      console.error(`demo failed: ${err.message}`);
      code = err.exitCode;
    } else if (
      err instanceof TypeError && /argument|option/i.test(String(err))
    ) {
      console.error(`demo: ${(err as Error).message}\n\n${HELP}`);
      code = 2;
    } else {
      console.error(err);
      code = 1;
    }
  }
  Deno.exit(code);
}
