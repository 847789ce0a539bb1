/**
 * The shop's orders in a SQLite file, through the `node:sqlite` built into
 * Deno (no native library to download, no FFI permission).
 *
 * The agent only ever adds to this schema: a `shipped_at` column, two
 * triggers that stamp it and one partial index for the eligibility query.
 * Its own ledger lives elsewhere.
 */

import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import type { OrdersConfig } from "../config.ts";
import { ConfigError, errorMessage } from "../errors.ts";
import { parseSqlTime, sqlTime } from "../clock.ts";
import { withBusyRetry } from "../sqlite_busy.ts";
import {
  checkOrderColumns,
  type EligibleQuery,
  type MigrationReport,
  type Order,
  type QuotedNames,
  quoteNames,
  type Shop,
} from "./shop.ts";

/** Quotes a validated identifier for SQLite. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A SQL string literal, for the one place values cannot be bound: DDL. */
export function sqlLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

export interface SqliteShopOptions {
  path: string;
  orders: OrdersConfig;
  busyTimeoutMs: number;
}

export const TRIGGER_UPDATE = "image_agent_stamp_shipped_at";
export const TRIGGER_INSERT = "image_agent_stamp_shipped_at_insert";
export const ELIGIBLE_INDEX = "image_agent_eligible";
export const IMAGE_INDEX = "image_agent_image";

export class SqliteShop implements Shop {
  readonly driver = "sqlite";
  #db: DatabaseSync;
  #o: OrdersConfig;
  #patience: number;
  #numericKey = false;
  /** What an emptied image column holds: NULL, or '' when NOT NULL. */
  #emptyImage: "NULL" | "''" = "NULL";
  #q: QuotedNames;

  constructor(options: SqliteShopOptions) {
    this.#o = options.orders;
    this.#patience = Math.max(options.busyTimeoutMs * 4, 2000);
    try {
      this.#db = new DatabaseSync(options.path);
    } catch (err) {
      throw new ConfigError(
        `Cannot open the shop database "${options.path}": ${errorMessage(err)}`,
        "database.path",
        { cause: err },
      );
    }
    this.#db.exec(`PRAGMA busy_timeout = ${Math.floor(options.busyTimeoutMs)}`);
    const o = this.#o;
    this.#q = quoteNames(o, quoteIdent);
    this.#checkTable();
  }

  #busy<T>(fn: () => T): T {
    return withBusyRetry(fn, {
      what: "The shop database",
      patienceMs: this.#patience,
    });
  }

  #tableInfo(): { name: string; type: string; pk: number; notnull: number }[] {
    return this.#busy(() =>
      this.#db.prepare(`PRAGMA table_info(${this.#q.table})`).all()
    ) as unknown as {
      name: string;
      type: string;
      pk: number;
      notnull: number;
    }[];
  }

  #checkTable(): void {
    const { key, image } = checkOrderColumns(
      this.#tableInfo().map((c) => ({
        name: c.name,
        type: c.type,
        notNull: c.notnull !== 0,
      })),
      this.#o,
      "",
    );
    this.#numericKey = /INT/i.test(key.type);
    this.#emptyImage = image.notNull ? "''" : "NULL";
  }

  #bindKey(key: string): SQLInputValue {
    return this.#numericKey && /^-?\d+$/.test(key) ? Number(key) : key;
  }

  columns(): Promise<string[]> {
    return Promise.resolve(this.#tableInfo().map((c) => c.name));
  }

  isMigrated(): Promise<boolean> {
    return Promise.resolve(
      this.#tableInfo().some((c) => c.name === this.#o.shippedAt),
    );
  }

  migrate(now: Date): Promise<MigrationReport> {
    const q = this.#q;
    const o = this.#o;
    const statuses = o.shippedStatuses.map(sqlLiteral).join(", ");
    const report: MigrationReport = {
      addedColumn: false,
      installedTrigger: false,
      backfilled: 0,
      addedIndex: false,
    };
    const rowRef = `${q.key} = NEW.${q.key}`;
    const stamp = `strftime('%Y-%m-%d %H:%M:%S', 'now')`;
    const triggers: [string, string][] = [
      [
        TRIGGER_UPDATE,
        `CREATE TRIGGER ${TRIGGER_UPDATE} AFTER UPDATE OF ${q.status} ON ${q.table}
  FOR EACH ROW WHEN NEW.${q.status} IN (${statuses}) AND NEW.${q.shippedAt} IS NULL
  BEGIN UPDATE ${q.table} SET ${q.shippedAt} = ${stamp} WHERE ${rowRef}; END`,
      ],
      [
        TRIGGER_INSERT,
        `CREATE TRIGGER ${TRIGGER_INSERT} AFTER INSERT ON ${q.table}
  FOR EACH ROW WHEN NEW.${q.status} IN (${statuses}) AND NEW.${q.shippedAt} IS NULL
  BEGIN UPDATE ${q.table} SET ${q.shippedAt} = ${stamp} WHERE ${rowRef}; END`,
      ],
    ];
    const indexes: [string, string][] = [
      [
        ELIGIBLE_INDEX,
        `CREATE INDEX ${ELIGIBLE_INDEX} ON ${q.table} (${q.shippedAt}, ${q.status})
  WHERE ${q.hdImage} IS NOT NULL AND ${q.hdImage} <> ''`,
      ],
      [
        // Finds the other orders naming an image before its file is deleted.
        IMAGE_INDEX,
        `CREATE INDEX ${IMAGE_INDEX} ON ${q.table} (${q.hdImage})
  WHERE ${q.hdImage} IS NOT NULL AND ${q.hdImage} <> ''`,
      ],
    ];

    this.#busy(() => {
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        const cols = this.#tableInfo();
        if (!cols.some((c) => c.name === o.shippedAt)) {
          this.#db.exec(
            `ALTER TABLE ${q.table} ADD COLUMN ${q.shippedAt} DATETIME`,
          );
          report.addedColumn = true;
        }
        const existing = this.#db.prepare(
          `SELECT name, sql FROM sqlite_master WHERE type IN ('trigger', 'index') AND tbl_name = ?`,
        ).all(o.table) as { name: string; sql: string }[];
        const sqlOf = new Map(existing.map((r) => [r.name, r.sql]));
        for (const [name, sql] of triggers) {
          if (sqlOf.get(name) === sql) continue;
          if (sqlOf.has(name)) this.#db.exec(`DROP TRIGGER ${name}`);
          this.#db.exec(sql);
          report.installedTrigger = true;
        }
        for (const [name, sql] of indexes) {
          if (sqlOf.get(name) === sql) continue;
          if (sqlOf.has(name)) this.#db.exec(`DROP INDEX ${name}`);
          this.#db.exec(sql);
          report.addedIndex = true;
        }
        const placeholders = o.shippedStatuses.map(() => "?").join(", ");
        const r = this.#db.prepare(
          `UPDATE ${q.table} SET ${q.shippedAt} = ?
           WHERE ${q.status} IN (${placeholders}) AND ${q.shippedAt} IS NULL`,
        ).run(sqlTime(now), ...o.shippedStatuses);
        report.backfilled = Number(r.changes);
        this.#db.exec("COMMIT");
      } catch (err) {
        this.#db.exec("ROLLBACK");
        throw err;
      }
    });
    return Promise.resolve(report);
  }

  #select(): string {
    const q = this.#q;
    return `SELECT ${q.key} AS k, ${q.orderNo} AS n, ${q.status} AS s,
      ${q.hdImage} AS i, instr(${q.hdImage}, char(0)) > 0 AS z,
      ${q.shippedAt} AS t FROM ${q.table}`;
  }

  #toOrder(r: Record<string, unknown>): Order {
    return {
      key: String(r.k),
      orderNo: r.n === null || r.n === undefined ? "" : String(r.n),
      status: r.s === null || r.s === undefined ? "" : String(r.s),
      // node:sqlite hands back text only up to its first NUL byte; keep the
      // NUL so the path is refused instead of read as another file's name.
      image: r.i === null || r.i === undefined
        ? ""
        : String(r.i) + (Number(r.z) === 1 ? "\0" : ""),
      shippedAt: r.t === null || r.t === undefined
        ? null
        : parseSqlTime(String(r.t)),
    };
  }

  #requireMigrated(): void {
    if (!this.#tableInfo().some((c) => c.name === this.#o.shippedAt)) {
      throw new ConfigError(
        `Table "${this.#o.table}" has no column "${this.#o.shippedAt}" yet`,
        "orders.shippedAt",
        { hint: "run 'image-agent migrate' first" },
      );
    }
  }

  eligible(query: EligibleQuery): Promise<Order[]> {
    this.#requireMigrated();
    const q = this.#q;
    const placeholders = this.#o.shippedStatuses.map(() => "?").join(", ");
    const params: SQLInputValue[] = [
      ...this.#o.shippedStatuses,
      sqlTime(query.shippedBefore),
    ];
    let sql = `${this.#select()}
      WHERE ${q.hdImage} IS NOT NULL AND ${q.hdImage} <> ''
        AND ${q.status} IN (${placeholders})
        AND ${q.shippedAt} IS NOT NULL AND ${q.shippedAt} <= ?`;
    if (query.afterKey !== undefined) {
      sql += ` AND ${q.key} > ?`;
      params.push(this.#bindKey(query.afterKey));
    }
    sql += ` ORDER BY ${q.key} LIMIT ?`;
    params.push(query.limit);
    const rows = this.#busy(() => this.#db.prepare(sql).all(...params));
    return Promise.resolve(
      rows.map((r) => this.#toOrder(r as Record<string, unknown>)),
    );
  }

  findByOrderNo(orderNo: string): Promise<Order[]> {
    const rows = this.#busy(() =>
      this.#db.prepare(
        `${this.#select()} WHERE ${this.#q.orderNo} = ? ORDER BY ${this.#q.key}`,
      ).all(orderNo)
    );
    return Promise.resolve(
      rows.map((r) => this.#toOrder(r as Record<string, unknown>)),
    );
  }

  findByKey(key: string): Promise<Order | null> {
    const row = this.#busy(() =>
      this.#db.prepare(`${this.#select()} WHERE ${this.#q.key} = ?`).get(
        this.#bindKey(key),
      )
    );
    return Promise.resolve(
      row ? this.#toOrder(row as Record<string, unknown>) : null,
    );
  }

  othersNamingImage(key: string, image: string): Promise<string[]> {
    const q = this.#q;
    const rows = this.#busy(() =>
      this.#db.prepare(
        `SELECT ${q.key} AS k FROM ${q.table}
          WHERE ${q.hdImage} = ? AND ${q.key} <> ?
            AND ${q.hdImage} IS NOT NULL AND ${q.hdImage} <> '' LIMIT 20`,
      ).all(image, this.#bindKey(key))
    );
    return Promise.resolve(rows.map((r) => String(r.k)));
  }

  imagesInUse(): Promise<{ key: string; image: string }[]> {
    const q = this.#q;
    const rows = this.#busy(() =>
      this.#db.prepare(
        `SELECT ${q.key} AS k, ${q.hdImage} AS i FROM ${q.table}
          WHERE ${q.hdImage} IS NOT NULL AND ${q.hdImage} <> ''`,
      ).all()
    );
    return Promise.resolve(
      rows.map((r) => ({ key: String(r.k), image: String(r.i) })),
    );
  }

  clearImages(items: { key: string; image: string }[]): Promise<string[]> {
    if (items.length === 0) return Promise.resolve([]);
    const q = this.#q;
    const changed = this.#busy(() => {
      const done: string[] = [];
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        const stmt = this.#db.prepare(
          `UPDATE ${q.table} SET ${q.hdImage} = ${this.#emptyImage} WHERE ${q.key} = ? AND ${q.hdImage} = ?`,
        );
        for (const it of items) {
          if (Number(stmt.run(this.#bindKey(it.key), it.image).changes) > 0) {
            done.push(it.key);
          }
        }
        this.#db.exec("COMMIT");
      } catch (err) {
        this.#db.exec("ROLLBACK");
        throw err;
      }
      return done;
    });
    return Promise.resolve(changed);
  }

  restoreImage(key: string, image: string): Promise<boolean> {
    const q = this.#q;
    const r = this.#busy(() =>
      this.#db.prepare(
        `UPDATE ${q.table} SET ${q.hdImage} = ? WHERE ${q.key} = ?
           AND (${q.hdImage} IS NULL OR ${q.hdImage} = '' OR ${q.hdImage} = ?)`,
      ).run(image, this.#bindKey(key), image)
    );
    return Promise.resolve(Number(r.changes) > 0);
  }

  /** A SQLite shop is one file on one machine: the run lock is enough. */
  claim(keys: string[]): Promise<string[]> {
    return Promise.resolve(keys);
  }

  release(_keys: string[]): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#db.close();
    return Promise.resolve();
  }
}
