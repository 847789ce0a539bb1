/**
 * The MySQL/MariaDB shop fixture: see shop_fixture.ts. Each fixture is a
 * fresh database (`ia_test_*`) on the test server, dropped again by
 * `close()`. The fixture's own session runs at +08:00, as a shop's
 * application might, so a test notices any time the agent takes from the
 * writer's zone. Text columns are VARCHAR(255), the image column TEXT (so
 * the agent's index needs a prefix, as on many real shops).
 */

import mysql from "mysql2/promise";
import {
  freshDatabaseName,
  type OrderRowSpec,
  type OrderTableNames,
  type ShopFixture,
} from "./shop_fixture.ts";

export const MYSQL_PASSWORD_ENV = "IMAGE_AGENT_TEST_MYSQL_PASSWORD";

function q(name: string): string {
  return "`" + name.replaceAll("`", "``") + "`";
}

async function connect(url: URL, database?: string) {
  const conn = await mysql.createConnection({
    host: url.hostname,
    port: Number(url.port || 3306),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database,
    dateStrings: true,
    charset: "utf8mb4",
  });
  await conn.query("SET time_zone = '+08:00'");
  return conn;
}

export async function createMysqlFixture(
  serverUrl: string,
): Promise<ShopFixture> {
  const url = new URL(serverUrl);
  const name = freshDatabaseName();
  const admin = await connect(url);
  try {
    await admin.query(`CREATE DATABASE ${q(name)} CHARACTER SET utf8mb4`);
  } finally {
    await admin.end();
  }
  Deno.env.set(MYSQL_PASSWORD_ENV, decodeURIComponent(url.password));
  const shopUrl = new URL(serverUrl);
  shopUrl.password = "";
  shopUrl.pathname = `/${name}`;
  return new MysqlFixture(serverUrl, name, await connect(url, name), {
    driver: "mysql",
    url: shopUrl.toString(),
    passwordEnv: MYSQL_PASSWORD_ENV,
  });
}

type Row = Record<string, unknown>;

class MysqlFixture implements ShopFixture {
  readonly driver = "mysql";
  #serverUrl: string;
  #name: string;
  #conn: mysql.Connection;
  #names?: OrderTableNames;
  /** One statement at a time on the one connection. */
  #queue: Promise<unknown> = Promise.resolve();
  readonly database: Record<string, unknown>;

  constructor(
    serverUrl: string,
    name: string,
    conn: mysql.Connection,
    database: Record<string, unknown>,
  ) {
    this.#serverUrl = serverUrl;
    this.#name = name;
    this.#conn = conn;
    this.database = database;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  #n(): Record<keyof OrderTableNames, string> {
    if (!this.#names) throw new Error("createOrders() was not called");
    const n = this.#names;
    return {
      table: q(n.table),
      key: q(n.key),
      orderNo: q(n.orderNo),
      status: q(n.status),
      hdImage: q(n.hdImage),
      shippedAt: q(n.shippedAt),
    };
  }

  async #hasShippedAt(): Promise<boolean> {
    const [rows] = await this.#conn.execute(
      `SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()
          AND TABLE_NAME = ? AND COLUMN_NAME = ?`,
      [this.#names!.table, this.#names!.shippedAt],
    );
    return (rows as Row[]).length > 0;
  }

  createOrders(names: OrderTableNames, withShippedAt: boolean): Promise<void> {
    this.#names = names;
    const n = this.#n();
    return this.#serial(async () => {
      await this.#conn.query(
        `CREATE TABLE ${n.table} (${n.key} INT PRIMARY KEY,
          ${n.orderNo} VARCHAR(255), ${n.status} VARCHAR(255),
          ${n.hdImage} TEXT${
          withShippedAt ? `, ${n.shippedAt} DATETIME NULL` : ""
        }) ENGINE=InnoDB`,
      );
    });
  }

  insertOrders(rows: OrderRowSpec[]): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    const n = this.#n();
    return this.#serial(async () => {
      const withShippedAt = await this.#hasShippedAt();
      await this.#conn.query("START TRANSACTION");
      try {
        for (const r of rows) {
          const cols = [n.key, n.orderNo, n.status, n.hdImage];
          const vals: (string | number | null)[] = [
            r.key,
            r.orderNo,
            r.status,
            r.image,
          ];
          if (withShippedAt && r.shippedAt !== undefined) {
            cols.push(n.shippedAt);
            vals.push(r.shippedAt);
          }
          await this.#conn.execute(
            `INSERT INTO ${n.table} (${cols.join(", ")})
             VALUES (${cols.map(() => "?").join(", ")})`,
            vals,
          );
        }
        await this.#conn.query("COMMIT");
      } catch (err) {
        await this.#conn.query("ROLLBACK");
        throw err;
      }
    });
  }

  orders(): Promise<OrderRowSpec[]> {
    const n = this.#n();
    return this.#serial(async () => {
      const t = await this.#hasShippedAt()
        ? `DATE_FORMAT(${n.shippedAt}, '%Y-%m-%d %H:%i:%s')`
        : "NULL";
      const [rows] = await this.#conn.query(
        `SELECT ${n.key} AS k, ${n.orderNo} AS o, ${n.status} AS s,
           ${n.hdImage} AS i, ${t} AS t FROM ${n.table} ORDER BY ${n.key}`,
      );
      return (rows as Row[]).map((r) => ({
        key: Number(r.k),
        orderNo: String(r.o),
        status: String(r.s),
        image: r.i === null ? null : String(r.i),
        shippedAt: r.t === null ? null : String(r.t),
      }));
    });
  }

  setStatus(key: number, status: string): Promise<void> {
    const n = this.#n();
    return this.#serial(async () => {
      await this.#conn.execute(
        `UPDATE ${n.table} SET ${n.status} = ? WHERE ${n.key} = ?`,
        [status, key],
      );
    });
  }

  async holdWriteLock(): Promise<() => Promise<void>> {
    const n = this.#n();
    const other = await connect(new URL(this.#serverUrl), this.#name);
    await other.query("START TRANSACTION");
    await other.query(`SELECT 1 FROM ${n.table} FOR UPDATE`);
    return async () => {
      await other.query("ROLLBACK");
      await other.end();
    };
  }

  async close(): Promise<void> {
    await this.#serial(() => this.#conn.end());
    const admin = await connect(new URL(this.#serverUrl));
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${q(this.#name)}`);
    } finally {
      await admin.end();
    }
  }
}
