/** `image-agent migrate`: the one schema step in the shop's database. */

import {
  type Command,
  COMMON_HELP,
  EXIT_CODES_HELP,
  parseCommandArgs,
  printJson,
} from "./command.ts";
import { readConfig } from "./context.ts";
import { openShop } from "../shop/open.ts";
import { sqlTime } from "../clock.ts";

export const migrateCommand: Command = {
  name: "migrate",
  summary: "add shipped_at, its trigger and index to the order table",
  help: `Usage: image-agent migrate [OPTIONS]

Prepares the shop's order table, and nothing else in it:
  - adds the column orders.shippedAt (default shipped_at) when missing;
  - installs triggers that stamp it (UTC) when an order's status becomes one
    of orders.shippedStatuses while it is still empty;
  - sets it to the time of the migration for orders already shipped that
    have none: their ten days start now;
  - adds an index so that a run with nothing to do stays fast.
Running it again changes nothing.

${COMMON_HELP}

${EXIT_CODES_HELP}
`,
  async run(deps, argv) {
    const { values } = parseCommandArgs("migrate", argv, {});
    const config = readConfig(deps, values.config);
    const shop = await openShop(config);
    try {
      const now = deps.clock.now();
      const r = await shop.migrate(now);
      if (values.json) {
        printJson(deps, { ...r, migratedAt: sqlTime(now) });
        return 0;
      }
      const lines = [
        r.addedColumn
          ? `added column ${config.orders.table}.${config.orders.shippedAt}`
          : `column ${config.orders.table}.${config.orders.shippedAt} already present`,
        r.installedTrigger
          ? `installed the trigger stamping it for status ${
            config.orders.shippedStatuses.map((s) => `"${s}"`).join(", ")
          }`
          : "trigger already installed",
        r.backfilled > 0
          ? `stamped ${r.backfilled} already-shipped order(s) with ${
            sqlTime(now)
          } UTC`
          : "no already-shipped order needed a stamp",
        r.addedIndex ? "added the eligibility index" : "index already present",
      ];
      deps.stdout(lines.map((l) => `migrate: ${l}\n`).join(""));
      return 0;
    } finally {
      await shop.close();
    }
  },
};
