/** The shop's orders in MySQL or MariaDB. */

import { ConfigError } from "../errors.ts";
import type { Shop } from "./shop.ts";
import type { ServerShopOptions } from "./server.ts";

// TODO: the MySQL shop is being written; lift when src/shop/mysql.ts
// implements Shop.
export class MysqlShop {
  static open(_options: ServerShopOptions): Promise<Shop> {
    return Promise.reject(
      new ConfigError(
        `Config key "database.driver": "mysql" is not supported by this build yet`,
        "database.driver",
      ),
    );
  }
}
