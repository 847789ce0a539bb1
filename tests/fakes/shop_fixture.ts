/**
 * A shop database for tests, on every backend the agent supports, so that
 * one test suite runs over SQLite, PostgreSQL and MySQL/MariaDB alike.
 *
 * SQLite is always there (a `shop.db` file in the test's folder). PostgreSQL
 * and MySQL take part when `IMAGE_AGENT_TEST_PG_URL` and
 * `IMAGE_AGENT_TEST_MYSQL_URL` name a server on 127.0.0.1 (see
 * scripts/test-db-servers.sh); each `create()` then makes a fresh database
 * on it and `close()` drops it again.
 *
 * The fixture plays the shop's application: it creates the order table the
 * way a shop would, writes rows and status changes, and reads rows back the
 * way the application sees them, independently of the agent's own code.
 */

import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import { join } from "node:path";

export interface OrderRowSpec {
  key: number;
  orderNo: string;
  status: string;
  image: string | null;
  shippedAt?: string | null;
}

export interface OrderTableNames {
  table: string;
  key: string;
  orderNo: string;
  status: string;
  hdImage: string;
  shippedAt: string;
}

export interface ShopFixture {
  driver: "sqlite" | "postgres" | "mysql";
  /** The `database` section of a config file for this shop. */
  database: Record<string, unknown>;
  /**
   * Creates the table with the given names (id INTEGER PRIMARY KEY, the rest
   * text; shipped_at only when `withShippedAt`).
   */
  createOrders(
    names: OrderTableNames,
    withShippedAt: boolean,
  ): Promise<void>;
  insertOrders(rows: OrderRowSpec[]): Promise<void>;
  /**
   * All rows, key order, values as the shop's application reads them
   * (shippedAt as 'YYYY-MM-DD HH:MM:SS' UTC text or null).
   */
  orders(): Promise<OrderRowSpec[]>;
  setStatus(key: number, status: string): Promise<void>;
  /**
   * Takes the write lock a busy shop holds (SQLite: the file's write lock;
   * servers: a transaction holding every order row), from a connection of
   * its own, until the returned function is called.
   */
  holdWriteLock(): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface ShopBackend {
  driver: string;
  create(dir: string): Promise<ShopFixture>;
}

/**
 * sqlite always; postgres/mysql when IMAGE_AGENT_TEST_PG_URL /
 * IMAGE_AGENT_TEST_MYSQL_URL are set (each create() makes a fresh
 * database/schema).
 */
export function shopBackends(): ShopBackend[] {
  const backends: ShopBackend[] = [{
    driver: "sqlite",
    create: (dir) => Promise.resolve(new SqliteFixture(join(dir, "shop.db"))),
  }];
  const pgUrl = Deno.env.get("IMAGE_AGENT_TEST_PG_URL");
  if (pgUrl) {
    backends.push({
      driver: "postgres",
      create: async () => {
        const { createPostgresFixture } = await import(
          "./shop_fixture_postgres.ts"
        );
        return await createPostgresFixture(pgUrl);
      },
    });
  }
  const myUrl = Deno.env.get("IMAGE_AGENT_TEST_MYSQL_URL");
  if (myUrl) {
    backends.push({
      driver: "mysql",
      create: async () => {
        const { createMysqlFixture } = await import("./shop_fixture_mysql.ts");
        return await createMysqlFixture(myUrl);
      },
    });
  }
  return backends;
}

/** A name for a throwaway database: unique per process and call. */
export function freshDatabaseName(): string {
  const rand = crypto.getRandomValues(new Uint32Array(2));
  return `ia_test_${rand[0].toString(36)}${rand[1].toString(36)}`;
}

/** `YYYY-MM-DD HH:MM:SS` from a value a driver returned (Date or text). */
export function utcText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) {
    return value.toISOString().slice(0, 19).replace("T", " ");
  }
  return String(value).slice(0, 19).replace("T", " ");
}

function sqliteQuote(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

class SqliteFixture implements ShopFixture {
  readonly driver = "sqlite";
  readonly database: Record<string, unknown>;
  #db: DatabaseSync;
  #names?: OrderTableNames;
  #withShippedAt = false;

  constructor(path: string) {
    this.database = { driver: "sqlite", path };
    this.#db = new DatabaseSync(path);
    this.#db.exec("PRAGMA busy_timeout = 5000");
  }

  #n(): Record<keyof OrderTableNames, string> {
    if (!this.#names) throw new Error("createOrders() was not called");
    const n = this.#names;
    return {
      table: sqliteQuote(n.table),
      key: sqliteQuote(n.key),
      orderNo: sqliteQuote(n.orderNo),
      status: sqliteQuote(n.status),
      hdImage: sqliteQuote(n.hdImage),
      shippedAt: sqliteQuote(n.shippedAt),
    };
  }

  #hasShippedAt(): boolean {
    const n = this.#n();
    const cols = this.#db.prepare(`PRAGMA table_info(${n.table})`).all();
    return cols.some((c) => c.name === this.#names!.shippedAt);
  }

  createOrders(names: OrderTableNames, withShippedAt: boolean): Promise<void> {
    this.#names = names;
    this.#withShippedAt = withShippedAt;
    const n = this.#n();
    this.#db.exec(
      `CREATE TABLE ${n.table} (${n.key} INTEGER PRIMARY KEY, ${n.orderNo} TEXT,
        ${n.status} TEXT, ${n.hdImage} TEXT${
        withShippedAt ? `, ${n.shippedAt} DATETIME` : ""
      })`,
    );
    return Promise.resolve();
  }

  insertOrders(rows: OrderRowSpec[]): Promise<void> {
    const n = this.#n();
    const withShippedAt = this.#withShippedAt || this.#hasShippedAt();
    this.#db.exec("BEGIN");
    try {
      for (const r of rows) {
        const cols = [n.key, n.orderNo, n.status, n.hdImage];
        const vals: SQLInputValue[] = [r.key, r.orderNo, r.status, r.image];
        if (withShippedAt && r.shippedAt !== undefined) {
          cols.push(n.shippedAt);
          vals.push(r.shippedAt);
        }
        this.#db.prepare(
          `INSERT INTO ${n.table} (${cols.join(", ")})
           VALUES (${cols.map(() => "?").join(", ")})`,
        ).run(...vals);
      }
      this.#db.exec("COMMIT");
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
    return Promise.resolve();
  }

  orders(): Promise<OrderRowSpec[]> {
    const n = this.#n();
    const t = this.#hasShippedAt() ? n.shippedAt : "NULL";
    const rows = this.#db.prepare(
      `SELECT ${n.key} AS k, ${n.orderNo} AS o, ${n.status} AS s,
         ${n.hdImage} AS i, ${t} AS t FROM ${n.table} ORDER BY ${n.key}`,
    ).all();
    return Promise.resolve(rows.map((r) => ({
      key: Number(r.k),
      orderNo: String(r.o),
      status: String(r.s),
      image: r.i === null ? null : String(r.i),
      shippedAt: utcText(r.t),
    })));
  }

  setStatus(key: number, status: string): Promise<void> {
    const n = this.#n();
    this.#db.prepare(`UPDATE ${n.table} SET ${n.status} = ? WHERE ${n.key} = ?`)
      .run(status, key);
    return Promise.resolve();
  }

  holdWriteLock(): Promise<() => Promise<void>> {
    const other = new DatabaseSync(this.database.path as string);
    other.exec("BEGIN IMMEDIATE");
    return Promise.resolve(() => {
      other.exec("ROLLBACK");
      other.close();
      return Promise.resolve();
    });
  }

  close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
    return Promise.resolve();
  }
}
