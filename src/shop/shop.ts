/**
 * The shop's order database, behind one interface, so the engine works the
 * same on SQLite, PostgreSQL or MySQL.
 *
 * Guarantees every implementation keeps:
 * - table and column names come from the validated config and are quoted;
 *   values are always bound;
 * - a database busy with the shop's own writes is waited for and retried,
 *   and only after the configured patience is it reported, as
 *   `DatabaseBusyError`;
 * - `clearImage` and `restoreImage` are conditional updates: they change the
 *   row only when the image column still holds what the agent expects, so a
 *   value the shop wrote meanwhile is never overwritten.
 */

import type { OrdersConfig } from "../config.ts";
import { ConfigError } from "../errors.ts";

export interface Order {
  /** The primary key, as text. */
  key: string;
  orderNo: string;
  status: string;
  /** The image column as stored (relative to the image root, or absolute). */
  image: string;
  /** UTC, or null when the order has not shipped. */
  shippedAt: Date | null;
}

export interface EligibleQuery {
  /** Orders shipped at or before this instant. */
  shippedBefore: Date;
  /** Start after this key (orders come in key order), for paging. */
  afterKey?: string;
  limit: number;
}

export interface MigrationReport {
  addedColumn: boolean;
  installedTrigger: boolean;
  backfilled: number;
  addedIndex: boolean;
}

export interface Shop {
  /** "sqlite", "postgres", "mysql". */
  readonly driver: string;
  /** Column names of the order table, for `init`. */
  columns(): Promise<string[]>;
  migrate(now: Date): Promise<MigrationReport>;
  /** True when the `shipped_at` column exists (migrate has run). */
  isMigrated(): Promise<boolean>;
  /** Shipped orders with a non-empty image column, oldest first. */
  eligible(query: EligibleQuery): Promise<Order[]>;
  /** Orders by order number (several rows may share one). */
  findByOrderNo(orderNo: string): Promise<Order[]>;
  findByKey(key: string): Promise<Order | null>;
  /**
   * Keys of other orders whose image column holds exactly `image`: a file
   * they still name must outlive the cleanup of this order.
   */
  othersNamingImage(key: string, image: string): Promise<string[]>;
  /**
   * Every order whose image column is not empty, key and value: the run
   * looks here for orders naming one file in different words
   * (`a.png`, `./a.png`, a folder reached through a symlink).
   */
  imagesInUse(): Promise<{ key: string; image: string }[]>;
  /**
   * Empties the image column of each order whose column still holds
   * `image`; returns the keys changed. One transaction for the batch.
   */
  clearImages(items: { key: string; image: string }[]): Promise<string[]>;
  /** Puts `image` back when the column is empty; false if it was not. */
  restoreImage(key: string, image: string): Promise<boolean>;
  /**
   * Claims orders for this agent so that agents sharing one shop never work
   * on the same order at once; returns the keys claimed. A claim of a
   * crashed agent expires. A shop that only one agent can reach may claim
   * everything.
   */
  claim(keys: string[]): Promise<string[]>;
  /** Gives claimed orders back. */
  release(keys: string[]): Promise<void>;
  close(): Promise<void>;
}

/** The order table's names, each quoted for the dialect. */
export type QuotedNames = Record<
  "table" | "key" | "orderNo" | "status" | "hdImage" | "shippedAt",
  string
>;

/** Quotes every configured name with the dialect's `quote`. */
export function quoteNames(
  o: {
    table: string;
    key: string;
    orderNo: string;
    status: string;
    hdImage: string;
    shippedAt: string;
  },
  quote: (name: string) => string,
): QuotedNames {
  return {
    table: quote(o.table),
    key: quote(o.key),
    orderNo: quote(o.orderNo),
    status: quote(o.status),
    hdImage: quote(o.hdImage),
    shippedAt: quote(o.shippedAt),
  };
}

/** One column of the order table, as the dialect's catalogue describes it. */
export interface ColumnInfo {
  name: string;
  type: string;
  notNull: boolean;
}

/**
 * Checks that the order table exists and has every configured column;
 * throws `ConfigError` naming the key. Returns the key and image columns.
 * `where` ends the missing-table message ("on its search_path").
 */
export function checkOrderColumns(
  cols: ColumnInfo[],
  o: OrdersConfig,
  database: string,
  where = "",
): { key: ColumnInfo; image: ColumnInfo } {
  if (cols.length === 0) {
    throw new ConfigError(
      `Config key "orders.table": the shop database ${database}has no table "${o.table}"${where}`,
      "orders.table",
    );
  }
  const names = new Set(cols.map((c) => c.name));
  for (const k of ["key", "orderNo", "status", "hdImage"] as const) {
    if (!names.has(o[k])) {
      throw new ConfigError(
        `Config key "orders.${k}": table "${o.table}" has no column "${
          o[k]
        }" (it has ${[...names].join(", ")})`,
        `orders.${k}`,
      );
    }
  }
  return {
    key: cols.find((c) => c.name === o.key)!,
    image: cols.find((c) => c.name === o.hdImage)!,
  };
}
