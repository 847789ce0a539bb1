/** Opens the shop database the config names. */

import type { Config } from "../config.ts";
import { ConfigError } from "../errors.ts";
import type { Shop } from "./shop.ts";
import { SqliteShop } from "./sqlite.ts";

export function openShop(config: Config): Promise<Shop> {
  const db = config.database;
  if (db.driver === "sqlite") {
    return Promise.resolve(
      new SqliteShop({
        path: db.path,
        orders: config.orders,
        busyTimeoutMs: db.busyTimeoutMs,
      }),
    );
  }
  // TODO: PostgreSQL and MySQL shops are not built yet; lift when their Shop
  // implementations land.
  throw new ConfigError(
    `Config key "database.driver": "${db.driver}" is not supported by this build`,
    "database.driver",
  );
}
