/**
 * Benchmark: a nothing-to-do run on shops of 10,000 / 100,000 / 1,000,000
 * orders, on SQLite and on each server that scripts/test-db-servers.sh
 * started (IMAGE_AGENT_TEST_PG_URL, IMAGE_AGENT_TEST_MYSQL_URL).
 *
 * Each shop looks like one that has run for years: 99 % of its orders
 * shipped long ago with their image already emptied, the newest 1 % shipped
 * in the last days or not yet shipped, images still on disk. None is
 * eligible. For each backend and size it times the first `migrate` (column,
 * trigger, backfill, index), a second `migrate` (nothing to do), the shop's
 * `eligible()` query (median of several, after a warm-up) and a whole
 * `image-agent run --json` (median), and prints one JSON object.
 *
 *   eval "$(scripts/test-db-servers.sh start)"
 *   deno run -A scripts/bench/db_nothing_to_do.ts [--sizes 10000,100000] [--runs 3]
 *
 * Then, with `--work N` (default 10,000), a run that has work: N orders
 * all shipped long ago, each with a 4 KiB image on disk, backed up to a
 * local folder and cleaned by one `image-agent run --json` per backend (a
 * fresh shop for each of `--runs`): what the database side costs when every
 * order is planned, completed, deleted and cleared.
 *
 * Not a test: numbers depend on the machine. The server databases are named
 * `ia_test_bench_<size>` and dropped at the end.
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DatabaseSync } from "node:sqlite";
import postgres from "postgres";
import mysql from "mysql2/promise";
import { parseConfig } from "../../src/config.ts";
import { openShop } from "../../src/shop/open.ts";

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));
const DAY = 86_400_000;

interface Row {
  driver: string;
  orders: number;
  buildSeconds: number;
  migrateSeconds: number;
  migrateAgainSeconds: number;
  eligibleMs: number;
  eligibleFound: number;
  runSeconds: number | null;
  runExit: number | null;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    sizes: { type: "string", default: "10000,100000,1000000" },
    runs: { type: "string", default: "3" },
    work: { type: "string", default: "10000" },
  },
});
const sizes = values.sizes!.split(",").map(Number);
const runs = Math.max(1, Number(values.runs));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function seconds<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const r = await fn();
  return [(performance.now() - t) / 1000, r];
}

interface Built {
  database: Record<string, unknown>;
  /** Moves the old orders' shipped_at back 100 days, after migrate. */
  age(): Promise<void>;
  drop(): Promise<void>;
}

/** The newest orders: shipped in the last days or not yet, images on disk. */
const recentOf = (n: number) => Math.max(100, Math.floor(n / 100));

function buildSqlite(dir: string, n: number): Promise<Built> {
  const path = join(dir, `shop-${n}.db`);
  const db = new DatabaseSync(path);
  const recent = recentOf(n);
  db.exec(`CREATE TABLE orders (id INTEGER PRIMARY KEY, order_no TEXT,
    status TEXT, hd_image TEXT)`);
  db.prepare(`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g
      WHERE i < ?)
    INSERT INTO orders SELECT i, 'NO-' || i,
      CASE WHEN i > ? AND i % 2 = 0 THEN 'paid' ELSE 'shipped' END,
      CASE WHEN i > ? THEN 'hd/' || i || '.png' END FROM g`)
    .run(n, n - recent, n - recent);
  return Promise.resolve({
    database: { driver: "sqlite", path },
    age: () => {
      db.prepare(`UPDATE orders SET shipped_at = ? WHERE hd_image IS NULL`)
        .run(
          new Date(Date.now() - 100 * DAY).toISOString().slice(0, 19)
            .replace("T", " "),
        );
      db.exec("ANALYZE");
      return Promise.resolve();
    },
    drop: () => {
      db.close();
      return Deno.remove(path);
    },
  });
}

async function buildPostgres(serverUrl: string, n: number): Promise<Built> {
  const url = new URL(serverUrl);
  const name = `ia_test_bench_${n}`;
  const opts = {
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    onnotice: () => {},
    max: 1,
  };
  const admin = postgres({ ...opts, database: url.pathname.slice(1) });
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const sql = postgres({ ...opts, database: name });
  const recent = recentOf(n);
  await sql.unsafe(`CREATE TABLE orders (id integer PRIMARY KEY,
    order_no text, status text, hd_image text)`);
  await sql.unsafe(
    `INSERT INTO orders SELECT g, 'NO-' || g,
      CASE WHEN g > $2 AND g % 2 = 0 THEN 'paid' ELSE 'shipped' END,
      CASE WHEN g > $2 THEN 'hd/' || g || '.png' END
      FROM generate_series(1, $1::integer) AS g`,
    [n, n - recent],
  );
  await sql.unsafe("ANALYZE orders");
  const shopUrl = new URL(serverUrl);
  shopUrl.pathname = `/${name}`;
  return {
    database: { driver: "postgres", url: shopUrl.toString() },
    age: async () => {
      await sql.unsafe(
        `UPDATE orders SET shipped_at = now() - interval '100 days'
        WHERE hd_image IS NULL`,
      );
      await sql.unsafe("VACUUM ANALYZE orders");
    },
    drop: async () => {
      await sql.end();
      const a = postgres({ ...opts, database: url.pathname.slice(1) });
      await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

async function buildMysql(serverUrl: string, n: number): Promise<Built> {
  const url = new URL(serverUrl);
  const name = `ia_test_bench_${n}`;
  const opts = {
    host: url.hostname,
    port: Number(url.port || 3306),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
  };
  const admin = await mysql.createConnection(opts);
  await admin.query(`DROP DATABASE IF EXISTS ${name}`);
  await admin.query(`CREATE DATABASE ${name} CHARACTER SET utf8mb4`);
  await admin.end();
  const conn = await mysql.createConnection({ ...opts, database: name });
  const recent = recentOf(n);
  await conn.query(`CREATE TABLE orders (id INT PRIMARY KEY,
    order_no VARCHAR(64), status VARCHAR(32), hd_image VARCHAR(255))`);
  const [v] = await conn.query("SELECT VERSION() AS v") as [
    { v: string }[],
    unknown,
  ];
  // MariaDB's SEQUENCE engine makes the numbers; MySQL uses a recursive CTE.
  const source = /mariadb/i.test(v[0].v)
    ? `(SELECT seq AS g FROM seq_1_to_${n}) AS s`
    : `(WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c
         WHERE g < ${n}) SELECT g FROM c) AS s`;
  if (!/mariadb/i.test(v[0].v)) {
    await conn.query(`SET SESSION cte_max_recursion_depth = ${n + 1}`);
  }
  await conn.query(
    `INSERT INTO orders SELECT g, CONCAT('NO-', g),
      IF(g > ? AND g % 2 = 0, 'paid', 'shipped'),
      IF(g > ?, CONCAT('hd/', g, '.png'), NULL) FROM ${source}`,
    [n - recent, n - recent],
  );
  const shopUrl = new URL(serverUrl);
  shopUrl.pathname = `/${name}`;
  return {
    database: { driver: "mysql", url: shopUrl.toString() },
    age: async () => {
      await conn.query(
        `UPDATE orders SET shipped_at = UTC_TIMESTAMP() - INTERVAL 100 DAY
          WHERE hd_image IS NULL`,
      );
      await conn.query("ANALYZE TABLE orders");
    },
    drop: async () => {
      await conn.query(`DROP DATABASE IF EXISTS ${name}`);
      await conn.end();
    },
  };
}

/** One whole `image-agent run --json --quiet` process, timed. */
async function runAgent(configPath: string) {
  const t = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      MAIN,
      "run",
      "--json",
      "--quiet",
      "--config",
      configPath,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { out, seconds: (performance.now() - t) / 1000 };
}

/** The agent's config for a shop whose folders live under `work`. */
async function agentConfig(work: string, shop: Built) {
  const raw = {
    database: shop.database,
    orders: { shippedStatuses: ["shipped"] },
    images: { root: join(work, "images") },
    cleanup: { afterDays: 10 },
    backup: { target: "local", local: { dir: join(work, "backup") } },
    state: { dir: join(work, "state") },
  };
  const configPath = join(work, "image-agent.json");
  await Deno.writeTextFile(configPath, JSON.stringify(raw, null, 2));
  return { config: parseConfig(raw, configPath), configPath };
}

async function benchOne(
  driver: string,
  n: number,
  build: () => Promise<Built>,
  dir: string,
): Promise<Row> {
  const [buildSeconds, shop] = await seconds(build);
  try {
    const work = join(dir, `${driver}-${n}`);
    for (const sub of ["images", "backup", "state"]) {
      await Deno.mkdir(join(work, sub), { recursive: true });
    }
    const { config, configPath } = await agentConfig(work, shop);

    const s = await openShop(config);
    const [migrateSeconds] = await seconds(() => s.migrate(new Date()));
    await shop.age();
    const [migrateAgainSeconds, again] = await seconds(() =>
      s.migrate(new Date())
    );
    if (again.addedColumn || again.installedTrigger || again.addedIndex) {
      throw new Error(`${driver}: a second migrate changed something`);
    }
    const query = {
      shippedBefore: new Date(Date.now() - 10 * DAY),
      limit: config.cleanup.batchSize,
    };
    await s.eligible(query);
    const times: number[] = [];
    let found = 0;
    for (let i = 0; i < Math.max(5, runs); i++) {
      const t = performance.now();
      found = (await s.eligible(query)).length;
      times.push(performance.now() - t);
    }
    await s.close();

    const runTimes: number[] = [];
    let runExit: number | null = null;
    for (let i = 0; i < runs; i++) {
      const { out, seconds } = await runAgent(configPath);
      runTimes.push(seconds);
      runExit = out.code;
      if (out.code !== 0) {
        console.error(new TextDecoder().decode(out.stderr));
        break;
      }
    }
    return {
      driver,
      orders: n,
      buildSeconds: round(buildSeconds),
      migrateSeconds: round(migrateSeconds),
      migrateAgainSeconds: round(migrateAgainSeconds),
      eligibleMs: round(median(times)),
      eligibleFound: found,
      runSeconds: runExit === 0 ? round(median(runTimes)) : null,
      runExit,
    };
  } finally {
    await shop.drop();
  }
}

/** Gives every order of a built shop the status and an image to clean. */
const FILL: Record<string, string> = {
  sqlite:
    `UPDATE orders SET status = 'shipped', hd_image = 'hd/' || id || '.png'`,
  postgres:
    `UPDATE orders SET status = 'shipped', hd_image = 'hd/' || id || '.png'`,
  mysql:
    `UPDATE orders SET status = 'shipped', hd_image = CONCAT('hd/', id, '.png')`,
};

/** Ships every order 100 days ago, after `migrate` added the column. */
const AGE: Record<string, string> = {
  sqlite: `UPDATE orders SET shipped_at = datetime('now', '-100 days')`,
  postgres: `UPDATE orders SET shipped_at = now() - interval '100 days'`,
  mysql: `UPDATE orders SET shipped_at = UTC_TIMESTAMP() - INTERVAL 100 DAY`,
};

/** Runs one statement on a built shop through the agent's own driver. */
async function exec(shop: Built, statement: string): Promise<void> {
  const d = shop.database;
  if (d.driver === "sqlite") {
    const db = new DatabaseSync(String(d.path));
    db.exec(statement);
    db.close();
  } else if (d.driver === "postgres") {
    const sql = postgres(String(d.url), { onnotice: () => {}, max: 1 });
    await sql.unsafe(statement);
    await sql.end();
  } else {
    const conn = await mysql.createConnection(String(d.url));
    await conn.query(statement);
    await conn.end();
  }
}

interface WorkRow {
  driver: string;
  orders: number;
  runSeconds: number | null;
  cleaned: number;
}

/** One run over `n` due orders on a fresh shop, `runs` times; the median. */
async function benchWork(
  driver: string,
  n: number,
  build: () => Promise<Built>,
  dir: string,
): Promise<WorkRow> {
  const times: number[] = [];
  let cleaned = 0;
  for (let i = 0; i < runs; i++) {
    const shop = await build();
    const work = join(dir, `work-${driver}-${n}-${i}`);
    try {
      for (const sub of ["images/hd", "backup", "state"]) {
        await Deno.mkdir(join(work, sub), { recursive: true });
      }
      const image = new Uint8Array(4096);
      for (let k = 1; k <= n; k++) {
        image[0] = k & 0xff;
        image[1] = (k >> 8) & 0xff;
        image[2] = k >> 16;
        await Deno.writeFile(join(work, "images/hd", `${k}.png`), image);
      }
      const { config, configPath } = await agentConfig(work, shop);
      const s = await openShop(config);
      await s.migrate(new Date());
      await s.close();
      await exec(shop, FILL[driver]);
      await exec(shop, AGE[driver]);
      const { out, seconds: took } = await runAgent(configPath);
      if (out.code !== 0) {
        console.error(new TextDecoder().decode(out.stderr));
        return { driver, orders: n, runSeconds: null, cleaned: 0 };
      }
      cleaned = JSON.parse(new TextDecoder().decode(out.stdout)).cleaned;
      times.push(took);
    } finally {
      await shop.drop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  }
  return { driver, orders: n, runSeconds: round(median(times)), cleaned };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

const dir = await Deno.makeTempDir({ prefix: "ia-bench-db-" });
const rows: Row[] = [];
const work: WorkRow[] = [];
const workN = Number(values.work);
const pg = Deno.env.get("IMAGE_AGENT_TEST_PG_URL");
const my = Deno.env.get("IMAGE_AGENT_TEST_MYSQL_URL");
try {
  for (const n of sizes) {
    const plan: [string, () => Promise<Built>][] = [
      ["sqlite", () => buildSqlite(dir, n)],
    ];
    if (pg) plan.push(["postgres", () => buildPostgres(pg, n)]);
    if (my) plan.push(["mysql", () => buildMysql(my, n)]);
    for (const [driver, build] of plan) {
      console.error(`${driver}: ${n} orders`);
      rows.push(await benchOne(driver, n, build, dir));
    }
  }
  if (workN > 0) {
    const plan: [string, () => Promise<Built>][] = [
      ["sqlite", () => buildSqlite(dir, workN)],
    ];
    if (pg) plan.push(["postgres", () => buildPostgres(pg, workN)]);
    if (my) plan.push(["mysql", () => buildMysql(my, workN)]);
    for (const [driver, build] of plan) {
      console.error(`${driver}: a run over ${workN} due orders`);
      work.push(await benchWork(driver, workN, build, dir));
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
console.log(JSON.stringify(
  {
    benchmark: "db_nothing_to_do",
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    runs,
    rows,
    work,
  },
  null,
  2,
));
