/**
 * Generated shops for the benchmarks: a SQLite order table shaped like a
 * pet-portrait shop's (the same columns as the demo shop, plus `shipped_at`
 * already filled so `migrate` only adds its trigger and index), built with
 * one recursive INSERT so a million rows take seconds, and the image-agent
 * config that points at it.
 */

import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";

const CREATE = `CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  order_no TEXT NOT NULL UNIQUE,
  customer TEXT NOT NULL,
  status TEXT NOT NULL,
  hd_image TEXT,
  created_at TEXT NOT NULL,
  shipped_at DATETIME
)`;

function fresh(path: string): DatabaseSync {
  for (const p of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    try {
      Deno.removeSync(p);
    } catch {
      // not there
    }
  }
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF");
  db.exec(CREATE);
  return db;
}

/**
 * A shop where no order is eligible: 90% shipped 30 to 400 days ago whose
 * image was already cleared, 5% shipped in the last three days (image still
 * there, not old enough), 5% paid and not shipped (image there).
 */
export function buildIdleShop(path: string, orders: number): void {
  const db = fresh(path);
  try {
    db.exec(
      `WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ${orders})
      INSERT INTO orders (id, order_no, customer, status, hd_image, created_at, shipped_at)
      SELECT x,
        printf('PP-%07d', x),
        'customer ' || (x % 977),
        CASE WHEN x % 20 = 1 THEN 'paid' ELSE 'shipped' END,
        CASE WHEN x % 20 IN (0, 1) THEN printf('2026-11/portrait-%07d.png', x) ELSE NULL END,
        strftime('%Y-%m-%d %H:%M:%S', 'now', printf('-%d days', CASE WHEN x % 20 IN (0, 1) THEN 4 ELSE 35 + x % 365 END)),
        CASE
          WHEN x % 20 = 1 THEN NULL
          WHEN x % 20 = 0 THEN strftime('%Y-%m-%d %H:%M:%S', 'now', printf('-%d hours', 1 + x % 72))
          ELSE strftime('%Y-%m-%d %H:%M:%S', 'now', printf('-%d days', 30 + x % 365))
        END
      FROM n`,
    );
  } finally {
    db.close();
  }
}

/** The relative image path of order `i` in an offload shop. */
export function offloadImage(i: number): string {
  return `d${String(i % 100).padStart(2, "0")}/portrait-${
    String(i).padStart(7, "0")
  }.png`;
}

/** A shop whose `orders` orders all shipped 30 days ago with an image each. */
export function buildOffloadShop(path: string, orders: number): void {
  const db = fresh(path);
  try {
    db.exec(
      `WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ${orders})
      INSERT INTO orders (id, order_no, customer, status, hd_image, created_at, shipped_at)
      SELECT x,
        printf('PP-%07d', x),
        'customer ' || (x % 977),
        'shipped',
        printf('d%02d/portrait-%07d.png', x % 100, x),
        strftime('%Y-%m-%d %H:%M:%S', 'now', '-40 days'),
        strftime('%Y-%m-%d %H:%M:%S', 'now', '-30 days')
      FROM n`,
    );
  } finally {
    db.close();
  }
}

export interface AgentConfig {
  dir: string;
  db: string;
  imagesRoot: string;
  backupDir: string;
  stateDir: string;
  concurrency?: number;
  batchSize?: number;
}

/** Writes image-agent.json into `dir` and returns its path. */
export async function writeConfig(c: AgentConfig): Promise<string> {
  const config = {
    database: { driver: "sqlite", path: c.db },
    orders: { shippedStatuses: ["shipped"] },
    images: { root: c.imagesRoot },
    cleanup: {
      afterDays: 10,
      ...(c.batchSize ? { batchSize: c.batchSize } : {}),
    },
    backup: {
      target: "local",
      required: true,
      ...(c.concurrency ? { concurrency: c.concurrency } : {}),
      local: { dir: c.backupDir },
    },
    state: { dir: c.stateDir },
  };
  const path = join(c.dir, "image-agent.json");
  await Deno.writeTextFile(path, JSON.stringify(config, null, 2) + "\n");
  return path;
}

/** How SQLite answers the eligibility query of a nothing-to-do run. */
export function eligiblePlan(path: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const rows = db.prepare(`EXPLAIN QUERY PLAN
      SELECT id, order_no, status, hd_image, shipped_at FROM orders
      WHERE hd_image IS NOT NULL AND hd_image <> ''
        AND status IN ('shipped') AND shipped_at IS NOT NULL
        AND shipped_at <= datetime('now', '-10 days')
      ORDER BY id LIMIT 64`).all() as { detail: string }[];
    return rows.map((r) => r.detail).join("; ");
  } finally {
    db.close();
  }
}
