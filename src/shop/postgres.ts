/**
 * The shop's orders in PostgreSQL, through the `postgres` npm driver (pure
 * JavaScript, bundles into `deno compile`).
 *
 * One connection per agent, held for the whole run: its session carries
 * the order claims (advisory locks), which the server drops by itself when
 * the session ends, so a crashed agent's claims vanish with it. The session
 * runs in UTC with `lock_timeout` set to `database.busyTimeoutMs`, so no
 * statement waits forever behind the shop's writes and no time is ever read
 * in the server's local zone.
 *
 * `migrate` adds a `timestamptz` `shipped_at` column, a PL/pgSQL function
 * and a `BEFORE INSERT OR UPDATE OF status` trigger that stamps it, the
 * backfill and a partial index, all in one transaction (PostgreSQL's DDL is
 * transactional: a failed migrate leaves nothing behind). Each object the
 * agent adds carries a comment with a fingerprint of its definition, so a
 * second migrate recognises it and changes nothing.
 */

import postgres from "postgres";
import type { OrdersConfig } from "../config.ts";
import { AgentError, ConfigError, errorMessage } from "../errors.ts";
import {
  checkOrderColumns,
  type ColumnInfo,
  type EligibleQuery,
  type MigrationReport,
  type Order,
  type QuotedNames,
  quoteNames,
  type Shop,
} from "./shop.ts";
import {
  advisoryLockId,
  connectionError,
  describeTarget,
  patienceFor,
  type ServerShopOptions,
  type ServerTarget,
  sha256Hex,
  withServerBusyRetry,
} from "./server.ts";

/** Quotes a validated identifier for PostgreSQL. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A string literal, for the one place values cannot be bound: DDL. */
export function pgLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

export const TRIGGER_NAME = "image_agent_stamp_shipped_at";

/** Lock waits, deadlocks and serialization failures: worth another try. */
export function isPgBusy(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === "55P03" || code === "40P01" || code === "40001";
}

type Sql = postgres.Sql;
/** A connection or a transaction: anything that runs a statement. */
type Runner = Pick<postgres.TransactionSql, "unsafe">;
type Row = Record<string, unknown>;

export class PostgresShop implements Shop {
  readonly driver = "postgres";
  #sql: Sql;
  #target: ServerTarget;
  #o: OrdersConfig;
  #q: QuotedNames;
  #patience: number;
  /** What an emptied image column holds: NULL, or '' when NOT NULL. */
  #emptyImage: "NULL" | "''" = "NULL";
  #claimed = new Set<string>();
  #lockIds = new Map<string, string>();

  private constructor(sql: Sql, options: ServerShopOptions) {
    this.#sql = sql;
    this.#target = options.target;
    this.#o = options.orders;
    this.#patience = patienceFor(options.busyTimeoutMs);
    const o = this.#o;
    this.#q = quoteNames(o, quoteIdent);
  }

  /** Connects, sets the session up and checks the order table. */
  static async open(options: ServerShopOptions): Promise<PostgresShop> {
    const t = options.target;
    const sql = postgres({
      host: t.host,
      port: t.port,
      user: t.user,
      password: t.password,
      database: t.database,
      // One session: advisory locks belong to it.
      max: 1,
      max_lifetime: null,
      idle_timeout: undefined,
      connect_timeout: 10,
      ssl: sslOption(t.params),
      onnotice: () => {},
      connection: {
        application_name: "image-agent",
        TimeZone: "UTC",
        lock_timeout: String(Math.max(1, Math.floor(options.busyTimeoutMs))),
      } as Record<string, string>,
    });
    const shop = new PostgresShop(sql, options);
    try {
      await sql.unsafe("SELECT 1");
    } catch (err) {
      await sql.end({ timeout: 1 }).catch(() => {});
      throw connectionError(err, t, pgErrorKind(err));
    }
    try {
      await shop.#checkTable();
    } catch (err) {
      await sql.end({ timeout: 1 }).catch(() => {});
      throw err;
    }
    return shop;
  }

  #busy<T>(fn: () => Promise<T>): Promise<T> {
    return withServerBusyRetry(fn, {
      what: `The shop database ${describeTarget(this.#target)}`,
      patienceMs: this.#patience,
      isBusy: isPgBusy,
    });
  }

  async #tableInfo(sql: Runner = this.#sql): Promise<ColumnInfo[]> {
    const rows = await sql.unsafe(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
              a.attnotnull AS not_null
         FROM pg_attribute a
        WHERE a.attrelid = to_regclass($1) AND a.attnum > 0
          AND NOT a.attisdropped
        ORDER BY a.attnum`,
      [this.#q.table],
    );
    return rows.map((r) => ({
      name: String(r.name),
      type: String(r.type),
      notNull: r.not_null === true,
    }));
  }

  async #checkTable(): Promise<void> {
    const { image } = checkOrderColumns(
      await this.#tableInfo(),
      this.#o,
      `${describeTarget(this.#target)} `,
      " on its search_path",
    );
    this.#emptyImage = image.notNull ? "''" : "NULL";
  }

  async columns(): Promise<string[]> {
    return (await this.#tableInfo()).map((c) => c.name);
  }

  async isMigrated(): Promise<boolean> {
    return (await this.#tableInfo()).some((c) => c.name === this.#o.shippedAt);
  }

  async migrate(now: Date): Promise<MigrationReport> {
    try {
      return await this.#migrate(now);
    } catch (err) {
      if ((err as { code?: string })?.code !== "42501") throw err;
      throw new AgentError(
        `Cannot migrate the order table on ${describeTarget(this.#target)}: ${
          errorMessage(err)
        }`,
        undefined,
        {
          cause: err,
          hint:
            "run migrate as the table's owner (or a member of its role), with CREATE on its schema; see docs/databases.md",
        },
      );
    }
  }

  async #migrate(now: Date): Promise<MigrationReport> {
    const q = this.#q;
    const o = this.#o;
    const tag = (await sha256Hex(o.table)).slice(0, 10);
    const fnName = `image_agent_stamp_${tag}`;
    const indexName = `image_agent_eligible_${tag}`;
    const imageIndexName = `image_agent_image_${tag}`;

    return await this.#busy(() =>
      this.#sql.begin(async (tx) => {
        const report: MigrationReport = {
          addedColumn: false,
          installedTrigger: false,
          backfilled: 0,
          addedIndex: false,
        };
        let cols = await this.#tableInfo(tx);
        if (!cols.some((c) => c.name === o.shippedAt)) {
          await tx.unsafe(
            `ALTER TABLE ${q.table} ADD COLUMN ${q.shippedAt} timestamptz`,
          );
          report.addedColumn = true;
          cols = await this.#tableInfo(tx);
        }
        const type = cols.find((c) => c.name === o.shippedAt)!.type;
        // A shop's own `timestamp` column holds UTC wall-clock time; ours is
        // `timestamptz`, an instant. Either way the writer's zone never counts.
        const stamp = /with time zone/.test(type)
          ? "now()"
          : /^timestamp/.test(type)
          ? "(now() AT TIME ZONE 'UTC')"
          : "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')";

        const [{ schema }] = await tx.unsafe(
          `SELECT n.nspname AS schema FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = to_regclass($1)`,
          [q.table],
        );
        const fnQ = `${quoteIdent(String(schema))}.${quoteIdent(fnName)}`;
        const statuses = o.shippedStatuses.map(pgLiteral).join(", ");
        const body = `
BEGIN
  IF NEW.${q.status} IN (${statuses}) AND NEW.${q.shippedAt} IS NULL THEN
    NEW.${q.shippedAt} := ${stamp};
  END IF;
  RETURN NEW;
END
`;
        const fnSql = `CREATE OR REPLACE FUNCTION ${fnQ}() RETURNS trigger
  LANGUAGE plpgsql AS ${pgLiteral(body)}`;
        const triggerSql = `CREATE TRIGGER ${TRIGGER_NAME}
  BEFORE INSERT OR UPDATE OF ${q.status} ON ${q.table}
  FOR EACH ROW EXECUTE FUNCTION ${fnQ}()`;
        const indexSql =
          `CREATE INDEX ${indexName} ON ${q.table} (${q.shippedAt}, ${q.status})
  WHERE ${q.hdImage} IS NOT NULL AND ${q.hdImage} <> ''`;
        const mark = async (sql: string) =>
          `image-agent ${(await sha256Hex(sql)).slice(0, 16)}`;
        const fnMark = await mark(fnSql);
        const triggerMark = await mark(triggerSql + fnMark);
        const indexMark = await mark(indexSql);
        // Finds the other orders naming an image before its file is deleted.
        const imageIndexSql =
          `CREATE INDEX ${imageIndexName} ON ${q.table} (${q.hdImage})
  WHERE ${q.hdImage} IS NOT NULL AND ${q.hdImage} <> ''`;
        const imageIndexMark = await mark(imageIndexSql);

        const [have] = await tx.unsafe(
          `SELECT
             (SELECT obj_description(p.oid, 'pg_proc') FROM pg_proc p
               JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE p.proname = $1 AND n.nspname = $4) AS fn,
             (SELECT obj_description(t.oid, 'pg_trigger') FROM pg_trigger t
              WHERE t.tgrelid = to_regclass($3) AND t.tgname = $2) AS trg,
             (SELECT count(*) FROM pg_trigger t
              WHERE t.tgrelid = to_regclass($3) AND t.tgname = $2) AS trg_n,
             (SELECT obj_description(c.oid, 'pg_class') FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relname = $5 AND n.nspname = $4) AS idx,
             (SELECT count(*) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relname = $5 AND n.nspname = $4) AS idx_n,
             (SELECT obj_description(c.oid, 'pg_class') FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relname = $6 AND n.nspname = $4) AS img,
             (SELECT count(*) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relname = $6 AND n.nspname = $4) AS img_n`,
          [fnName, TRIGGER_NAME, q.table, schema, indexName, imageIndexName],
        );
        if (have.fn !== fnMark) {
          await tx.unsafe(fnSql);
          await tx.unsafe(
            `COMMENT ON FUNCTION ${fnQ}() IS ${pgLiteral(fnMark)}`,
          );
          report.installedTrigger = true;
        }
        if (have.trg !== triggerMark) {
          if (Number(have.trg_n) > 0) {
            await tx.unsafe(`DROP TRIGGER ${TRIGGER_NAME} ON ${q.table}`);
          }
          await tx.unsafe(triggerSql);
          await tx.unsafe(
            `COMMENT ON TRIGGER ${TRIGGER_NAME} ON ${q.table} IS ${
              pgLiteral(triggerMark)
            }`,
          );
          report.installedTrigger = true;
        }
        if (have.idx !== indexMark) {
          const idxQ = `${quoteIdent(String(schema))}.${quoteIdent(indexName)}`;
          if (Number(have.idx_n) > 0) await tx.unsafe(`DROP INDEX ${idxQ}`);
          await tx.unsafe(indexSql);
          await tx.unsafe(
            `COMMENT ON INDEX ${idxQ} IS ${pgLiteral(indexMark)}`,
          );
          report.addedIndex = true;
        }
        if (have.img !== imageIndexMark) {
          const imgQ = `${quoteIdent(String(schema))}.${
            quoteIdent(imageIndexName)
          }`;
          if (Number(have.img_n) > 0) await tx.unsafe(`DROP INDEX ${imgQ}`);
          await tx.unsafe(imageIndexSql);
          await tx.unsafe(
            `COMMENT ON INDEX ${imgQ} IS ${pgLiteral(imageIndexMark)}`,
          );
          report.addedIndex = true;
        }
        const ph = o.shippedStatuses.map((_, i) => `$${i + 2}`).join(", ");
        const r = await tx.unsafe(
          `UPDATE ${q.table} SET ${q.shippedAt} = $1
            WHERE ${q.status} IN (${ph}) AND ${q.shippedAt} IS NULL`,
          [now, ...o.shippedStatuses] as never[],
        );
        report.backfilled = r.count;
        return report;
      }) as Promise<MigrationReport>
    );
  }

  #select(): string {
    const q = this.#q;
    // The session runs in UTC, so a shop's `timestamp` column reads as UTC.
    return `SELECT ${q.key}::text AS k, ${q.orderNo}::text AS n,
      ${q.status}::text AS s, ${q.hdImage}::text AS i,
      ${q.shippedAt}::timestamptz AS t FROM ${q.table}`;
  }

  #toOrder(r: Row): Order {
    const t = r.t;
    return {
      key: String(r.k),
      orderNo: r.n === null || r.n === undefined ? "" : String(r.n),
      status: r.s === null || r.s === undefined ? "" : String(r.s),
      image: r.i === null || r.i === undefined ? "" : String(r.i),
      shippedAt: t === null || t === undefined
        ? null
        : t instanceof Date
        ? t
        : new Date(String(t)),
    };
  }

  async #requireMigrated(): Promise<void> {
    if (!await this.isMigrated()) {
      throw new ConfigError(
        `Table "${this.#o.table}" has no column "${this.#o.shippedAt}" yet`,
        "orders.shippedAt",
        { hint: "run 'image-agent migrate' first" },
      );
    }
  }

  async eligible(query: EligibleQuery): Promise<Order[]> {
    await this.#requireMigrated();
    const q = this.#q;
    const statuses = this.#o.shippedStatuses;
    const params: unknown[] = [...statuses, query.shippedBefore];
    const ph = statuses.map((_, i) => `$${i + 1}`).join(", ");
    let sql = `${this.#select()}
      WHERE ${q.hdImage} IS NOT NULL AND ${q.hdImage} <> ''
        AND ${q.status} IN (${ph})
        AND ${q.shippedAt} IS NOT NULL
        AND ${q.shippedAt} <= $${params.length}::timestamptz`;
    if (query.afterKey !== undefined) {
      params.push(query.afterKey);
      sql += ` AND ${q.key} > $${params.length}`;
    }
    params.push(query.limit);
    sql += ` ORDER BY ${q.key} LIMIT $${params.length}`;
    const rows = await this.#busy(() =>
      this.#sql.unsafe(sql, params as never[])
    );
    return rows.map((r) => this.#toOrder(r));
  }

  async findByOrderNo(orderNo: string): Promise<Order[]> {
    const rows = await this.#busy(() =>
      this.#sql.unsafe(
        `${this.#select()} WHERE ${this.#q.orderNo} = $1 ORDER BY ${this.#q.key}`,
        [orderNo],
      )
    );
    return rows.map((r) => this.#toOrder(r));
  }

  async findByKey(key: string): Promise<Order | null> {
    const rows = await this.#busy(() =>
      this.#sql.unsafe(`${this.#select()} WHERE ${this.#q.key} = $1`, [key])
    );
    return rows.length ? this.#toOrder(rows[0]) : null;
  }

  async othersNamingImage(key: string, image: string): Promise<string[]> {
    const q = this.#q;
    const rows = await this.#busy(() =>
      this.#sql.unsafe(
        `SELECT ${q.key} AS k FROM ${q.table}
          WHERE ${q.hdImage} = $1 AND ${q.key}::text <> $2
            AND ${q.hdImage} IS NOT NULL AND ${q.hdImage} <> '' LIMIT 20`,
        [image, key],
      )
    );
    return rows.map((r) => String(r.k));
  }

  async imagesInUse(): Promise<{ key: string; image: string }[]> {
    const q = this.#q;
    const rows = await this.#busy(() =>
      this.#sql.unsafe(
        `SELECT ${q.key}::text AS k, ${q.hdImage} AS i FROM ${q.table}
          WHERE ${q.hdImage} IS NOT NULL AND ${q.hdImage} <> ''`,
      )
    );
    return rows.map((r) => ({ key: String(r.k), image: String(r.i) }));
  }

  async clearImages(
    items: { key: string; image: string }[],
  ): Promise<string[]> {
    if (items.length === 0) return [];
    const q = this.#q;
    return await this.#busy(() =>
      this.#sql.begin(async (tx) => {
        const done: string[] = [];
        for (const it of items) {
          const r = await tx.unsafe(
            `UPDATE ${q.table} SET ${q.hdImage} = ${this.#emptyImage}
              WHERE ${q.key} = $1 AND ${q.hdImage} = $2`,
            [it.key, it.image],
          );
          if (r.count > 0) done.push(it.key);
        }
        return done;
      }) as Promise<string[]>
    );
  }

  async restoreImage(key: string, image: string): Promise<boolean> {
    const q = this.#q;
    const r = await this.#busy(() =>
      this.#sql.unsafe(
        `UPDATE ${q.table} SET ${q.hdImage} = $1 WHERE ${q.key} = $2
           AND (${q.hdImage} IS NULL OR ${q.hdImage} = '' OR ${q.hdImage} = $1)`,
        [image, key],
      )
    );
    return r.count > 0;
  }

  async #lockId(key: string): Promise<string> {
    let id = this.#lockIds.get(key);
    if (!id) {
      id = await advisoryLockId(this.#o.table, key);
      this.#lockIds.set(key, id);
    }
    return id;
  }

  /**
   * Session advisory locks, one per order, tried without waiting: an order
   * another agent holds is simply not claimed this time.
   */
  async claim(keys: string[]): Promise<string[]> {
    const fresh = [...new Set(keys)].filter((k) => !this.#claimed.has(k));
    if (fresh.length > 0) {
      const ids = await Promise.all(fresh.map((k) => this.#lockId(k)));
      const values = ids.map((_, i) => `(${i}, $${i + 1}::bigint)`).join(", ");
      const rows = await this.#sql.unsafe(
        `SELECT v.i FROM (VALUES ${values}) AS v(i, id)
          WHERE pg_try_advisory_lock(v.id)`,
        ids,
      );
      for (const r of rows) this.#claimed.add(fresh[Number(r.i)]);
    }
    return keys.filter((k) => this.#claimed.has(k));
  }

  async release(keys: string[]): Promise<void> {
    const held = [...new Set(keys)].filter((k) => this.#claimed.has(k));
    if (held.length === 0) return;
    const ids = await Promise.all(held.map((k) => this.#lockId(k)));
    const values = ids.map((_, i) => `($${i + 1}::bigint)`).join(", ");
    await this.#sql.unsafe(
      `SELECT pg_advisory_unlock(v.id) FROM (VALUES ${values}) AS v(id)`,
      ids,
    );
    for (const k of held) this.#claimed.delete(k);
  }

  async close(): Promise<void> {
    this.#claimed.clear();
    await this.#sql.end({ timeout: 5 });
  }
}

function sslOption(
  params: Record<string, string>,
): boolean | "require" | "prefer" | "verify-full" {
  const mode = params.sslmode ?? params.ssl;
  if (!mode || mode === "disable" || mode === "false") return false;
  if (mode === "verify-full" || mode === "verify-ca") return "verify-full";
  if (mode === "prefer" || mode === "allow") return "prefer";
  return "require";
}

function pgErrorKind(err: unknown): "auth" | "database" | "network" {
  const code = (err as { code?: string })?.code;
  if (code === "28P01" || code === "28000") return "auth";
  if (code === "3D000") return "database";
  return "network";
}
