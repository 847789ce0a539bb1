/**
 * Opens the shop database the config names. The PostgreSQL and MySQL
 * drivers are loaded only when the config asks for them, so a SQLite shop
 * never loads (or needs) either.
 */

import type { Config } from "../config.ts";
import type { Shop } from "./shop.ts";
import { SqliteShop } from "./sqlite.ts";

export interface OpenShopOptions {
  /** Where `database.passwordEnv` is looked up; the process env by default. */
  env?: (name: string) => string | undefined;
}

export async function openShop(
  config: Config,
  options: OpenShopOptions = {},
): Promise<Shop> {
  const db = config.database;
  if (db.driver === "sqlite") {
    return new SqliteShop({
      path: db.path,
      orders: config.orders,
      busyTimeoutMs: db.busyTimeoutMs,
    });
  }
  const { resolveServerTarget } = await import("./server.ts");
  const target = resolveServerTarget(db, {
    env: options.env,
    configFile: config.file,
  });
  const shopOptions = {
    target,
    orders: config.orders,
    busyTimeoutMs: db.busyTimeoutMs,
  };
  if (db.driver === "postgres") {
    const { PostgresShop } = await import("./postgres.ts");
    return await PostgresShop.open(shopOptions);
  }
  const { MysqlShop } = await import("./mysql.ts");
  return await MysqlShop.open(shopOptions);
}
