/**
 * The PostgreSQL shop fixture: see shop_fixture.ts. Each fixture is a fresh
 * database on the test server, dropped again by `close()`. The fixture's
 * own session runs in Asia/Shanghai, as a shop's application might, so a
 * test notices any time the agent takes from the writer's zone.
 */

import postgres from "postgres";
import {
  freshDatabaseName,
  type OrderRowSpec,
  type OrderTableNames,
  type ShopFixture,
} from "./shop_fixture.ts";

export const PG_PASSWORD_ENV = "IMAGE_AGENT_TEST_PG_PASSWORD";

function q(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function connect(url: URL, database: string): postgres.Sql {
  return postgres({
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database,
    max: 4,
    onnotice: () => {},
    connection: { TimeZone: "Asia/Shanghai" } as Record<string, string>,
  });
}

export async function createPostgresFixture(
  serverUrl: string,
): Promise<ShopFixture> {
  const url = new URL(serverUrl);
  const admin = connect(url, decodeURIComponent(url.pathname.slice(1)));
  const name = freshDatabaseName();
  try {
    await admin.unsafe(`CREATE DATABASE ${q(name)}`);
  } finally {
    await admin.end();
  }
  Deno.env.set(PG_PASSWORD_ENV, decodeURIComponent(url.password));
  const shopUrl = new URL(serverUrl);
  shopUrl.password = "";
  shopUrl.pathname = `/${name}`;
  return new PostgresFixture(serverUrl, name, connect(url, name), {
    driver: "postgres",
    url: shopUrl.toString(),
    passwordEnv: PG_PASSWORD_ENV,
  });
}

class PostgresFixture implements ShopFixture {
  readonly driver = "postgres";
  #serverUrl: string;
  #name: string;
  #sql: postgres.Sql;
  #names?: OrderTableNames;
  readonly database: Record<string, unknown>;

  constructor(
    serverUrl: string,
    name: string,
    sql: postgres.Sql,
    database: Record<string, unknown>,
  ) {
    this.#serverUrl = serverUrl;
    this.#name = name;
    this.#sql = sql;
    this.database = database;
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
    const rows = await this.#sql.unsafe(
      `SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = $1
          AND column_name = $2`,
      [this.#names!.table, this.#names!.shippedAt],
    );
    return rows.length > 0;
  }

  async createOrders(
    names: OrderTableNames,
    withShippedAt: boolean,
  ): Promise<void> {
    this.#names = names;
    const n = this.#n();
    await this.#sql.unsafe(
      `CREATE TABLE ${n.table} (${n.key} integer PRIMARY KEY,
        ${n.orderNo} text, ${n.status} text, ${n.hdImage} text${
        withShippedAt ? `, ${n.shippedAt} timestamptz` : ""
      })`,
    );
  }

  async insertOrders(rows: OrderRowSpec[]): Promise<void> {
    if (rows.length === 0) return;
    const n = this.#n();
    const withShippedAt = await this.#hasShippedAt();
    await this.#sql.begin(async (tx) => {
      for (const r of rows) {
        const cols = [n.key, n.orderNo, n.status, n.hdImage];
        const vals: (string | number | null)[] = [
          r.key,
          r.orderNo,
          r.status,
          r.image,
        ];
        const ph = ["$1::integer", "$2", "$3", "$4"];
        if (withShippedAt && r.shippedAt !== undefined) {
          cols.push(n.shippedAt);
          vals.push(r.shippedAt);
          ph.push("($5::text || '+00')::timestamptz");
        }
        await tx.unsafe(
          `INSERT INTO ${n.table} (${cols.join(", ")}) VALUES (${
            ph.join(", ")
          })`,
          vals,
        );
      }
    });
  }

  async orders(): Promise<OrderRowSpec[]> {
    const n = this.#n();
    const t = await this.#hasShippedAt()
      ? `to_char(${n.shippedAt}::timestamptz AT TIME ZONE 'UTC',
           'YYYY-MM-DD HH24:MI:SS')`
      : "NULL";
    const rows = await this.#sql.unsafe(
      `SELECT ${n.key} AS k, ${n.orderNo} AS o, ${n.status} AS s,
         ${n.hdImage} AS i, ${t} AS t FROM ${n.table} ORDER BY ${n.key}`,
    );
    return rows.map((r) => ({
      key: Number(r.k),
      orderNo: String(r.o),
      status: String(r.s),
      image: r.i === null ? null : String(r.i),
      shippedAt: r.t === null ? null : String(r.t),
    }));
  }

  async setStatus(key: number, status: string): Promise<void> {
    const n = this.#n();
    await this.#sql.unsafe(
      `UPDATE ${n.table} SET ${n.status} = $1 WHERE ${n.key} = $2`,
      [status, key],
    );
  }

  async holdWriteLock(): Promise<() => Promise<void>> {
    const n = this.#n();
    const held = Promise.withResolvers<void>();
    const locked = Promise.withResolvers<void>();
    const done = this.#sql.begin(async (tx) => {
      await tx.unsafe(`SELECT 1 FROM ${n.table} FOR UPDATE`);
      locked.resolve();
      await held.promise;
    }).catch(locked.reject);
    await locked.promise;
    return async () => {
      held.resolve();
      await done;
    };
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
    const url = new URL(this.#serverUrl);
    const admin = connect(url, decodeURIComponent(url.pathname.slice(1)));
    try {
      await admin.unsafe(
        `DROP DATABASE IF EXISTS ${q(this.#name)} WITH (FORCE)`,
      );
    } finally {
      await admin.end();
    }
  }
}
