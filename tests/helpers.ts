/**
 * Shared test helpers: a throwaway shop (database on any backend, an image
 * folder with real files, a backup folder, a state folder and a config
 * file), the engine wired to it with a manual clock, and a way to run the
 * real CLI as a subprocess.
 */

import { dirname, join } from "node:path";
import { ManualClock } from "../src/clock.ts";
import { type Config, loadConfig } from "../src/config.ts";
import { Ledger } from "../src/ledger/ledger.ts";
import { memoryLogger } from "../src/log.ts";
import { openShop } from "../src/shop/open.ts";
import { LocalStorage } from "../src/storage/local.ts";
import { IoPool } from "../src/io/pool.ts";
import type { EngineDeps, Step } from "../src/engine/engine.ts";
import type { Storage } from "../src/storage/storage.ts";
import type {
  OrderRowSpec,
  OrderTableNames,
  ShopBackend,
  ShopFixture,
} from "./fakes/shop_fixture.ts";

export const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const MAIN = join(REPO, "main.ts");

export const DEFAULT_NAMES: OrderTableNames = {
  table: "orders",
  key: "id",
  orderNo: "order_no",
  status: "status",
  hdImage: "hd_image",
  shippedAt: "shipped_at",
};

/** Test "now": 2026-06-01 00:00 UTC. */
export const NOW = new Date("2026-06-01T00:00:00Z");

export function daysAgo(days: number, from: Date = NOW): string {
  return new Date(from.getTime() - days * 86400000).toISOString().slice(0, 19)
    .replace("T", " ");
}

export interface TestOrder extends OrderRowSpec {
  /** Bytes to write at `image` (relative to the image root). */
  content?: Uint8Array | string;
}

export interface TestShop {
  dir: string;
  root: string;
  backupDir: string;
  stateDir: string;
  configPath: string;
  fixture: ShopFixture;
  names: OrderTableNames;
  config(): Config;
  close(): Promise<void>;
}

export interface MakeShopOptions {
  names?: OrderTableNames;
  orders: TestOrder[];
  /** Merged into the config file. */
  config?: Record<string, unknown>;
  shippedStatuses?: string[];
  /** Run migrate (at NOW) before inserting the orders; default true. */
  migrate?: boolean;
}

export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** Deterministic pseudo-random bytes. */
export function noise(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export async function makeShop(
  backend: ShopBackend,
  options: MakeShopOptions,
): Promise<TestShop> {
  const dir = await Deno.makeTempDir({ prefix: "image-agent-test-" });
  const root = join(dir, "hd 图片");
  const backupDir = join(dir, "nas backup");
  const stateDir = join(dir, "state");
  await Deno.mkdir(root);
  await Deno.mkdir(backupDir);
  const names = options.names ?? DEFAULT_NAMES;
  const fixture = await backend.create(dir);
  await fixture.createOrders(names, false);
  const configPath = join(dir, "image-agent.json");
  const config = deepMerge({
    database: fixture.database,
    orders: {
      ...names,
      shippedStatuses: options.shippedStatuses ?? ["shipped", "processing"],
    },
    images: { root: "hd 图片" },
    cleanup: { afterDays: 10 },
    backup: { target: "local", local: { dir: "nas backup" } },
    state: { dir: "state" },
    schedule: { cron: "0 2 * * *", timezone: "Asia/Shanghai" },
  }, options.config ?? {});
  await Deno.writeTextFile(configPath, JSON.stringify(config, null, 2));
  const shop: TestShop = {
    dir,
    root,
    backupDir,
    stateDir,
    configPath,
    fixture,
    names,
    config: () => loadConfig(configPath),
    async close() {
      await fixture.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  if (options.migrate !== false) {
    const s = await openShop(shop.config());
    await s.migrate(NOW);
    await s.close();
  }
  await writeImages(root, options.orders);
  await fixture.insertOrders(options.orders.map(({ content: _c, ...r }) => r));
  return shop;
}

export async function writeImages(root: string, orders: TestOrder[]) {
  for (const o of orders) {
    if (o.content === undefined || o.image === null) continue;
    const p = join(root, o.image);
    await Deno.mkdir(dirname(p), { recursive: true });
    await Deno.writeFile(
      p,
      typeof o.content === "string" ? bytes(o.content) : o.content,
    );
  }
}

function deepMerge(
  a: Record<string, unknown>,
  b: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = v && typeof v === "object" && !Array.isArray(v) && cur &&
        typeof cur === "object" && !Array.isArray(cur)
      ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
      : v;
  }
  return out;
}

export interface TestEngine extends EngineDeps {
  clock: ManualClock;
  log: ReturnType<typeof memoryLogger>;
  close(): Promise<void>;
}

export interface EngineOptions {
  now?: Date;
  afterStep?: (step: Step, keys: string[]) => void;
  storage?: Storage | null;
  /**
   * Run the file jobs on this thread instead of on workers, so a test that
   * patches `Deno` file calls to inject failures reaches them.
   */
  inlineIo?: boolean;
}

/** The engine wired to a test shop, as a fresh process would wire it. */
export async function openEngine(
  shop: TestShop,
  options: EngineOptions = {},
): Promise<TestEngine> {
  const config = shop.config();
  const clock = new ManualClock(options.now ?? NOW);
  const ledger = Ledger.open(config.state.dir, () => clock.now());
  const s = await openShop(config);
  const io = new IoPool({ workers: options.inlineIo ? 0 : 2 });
  const storage = options.storage !== undefined
    ? options.storage
    : config.backup.target === "local"
    ? new LocalStorage(config.backup.local.dir, { io })
    : null;
  return {
    config,
    shop: s,
    ledger,
    storage,
    clock,
    log: memoryLogger(),
    io,
    afterStep: options.afterStep,
    async close() {
      await storage?.close?.();
      await io.close();
      await s.close();
      ledger.close();
    },
  };
}

/**
 * Every file under `dir` (relative path → bytes), for byte-for-byte checks.
 * The ledger's identity marker is left out: it differs between shops.
 */
export async function snapshotFiles(
  dir: string,
): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  const walk = async (d: string, rel: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(p, r);
      else if (e.isFile && e.name !== ".image-agent-ledger") {
        out.set(r, await Deno.readFile(p));
      }
    }
  };
  await walk(dir, "");
  return out;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI (`deno run main.ts ...`) as a subprocess. */
export async function runCli(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; stdin?: string } = {},
): Promise<CliResult> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-cron", MAIN, ...args],
    cwd: options.cwd,
    env: { NO_COLOR: "1", ...options.env },
    stdin: options.stdin !== undefined ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  });
  const child = cmd.spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(bytes(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}
