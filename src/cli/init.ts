/**
 * `image-agent init`: writes a starter config next to the shop, filling the
 * column mapping from the order table it finds. It never overwrites a
 * config unless told to with `--force`.
 */

import { DatabaseSync } from "node:sqlite";
import { dirname, relative, resolve } from "node:path";
import {
  type Command,
  COMMON_HELP,
  EXIT_CODES_HELP,
  parseCommandArgs,
  printJson,
} from "./command.ts";
import { ConfigError, UsageError } from "../errors.ts";
import { identifierProblem } from "../config.ts";
import { quoteIdent } from "../shop/sqlite.ts";

const GUESSES = {
  key: ["id", "order_id", "orderid"],
  orderNo: [
    "order_no",
    "order_number",
    "orderno",
    "order_sn",
    "order_code",
    "number",
    "sn",
    "no",
  ],
  status: ["status", "order_status", "state"],
  hdImage: [
    "hd_image",
    "hd_image_path",
    "hd_path",
    "image_hd",
    "hd_file",
    "image_path",
    "image",
    "photo_path",
    "photo",
  ],
  shippedAt: ["shipped_at", "ship_time", "shipped_time", "delivered_at"],
} as const;

const TABLE_GUESSES = [
  "orders",
  "order",
  "t_order",
  "shop_orders",
  "order_info",
];

function pick(columns: string[], names: readonly string[]): string | undefined {
  const lower = new Map(columns.map((c) => [c.toLowerCase(), c]));
  for (const n of names) if (lower.has(n)) return lower.get(n);
}

export const initCommand: Command = {
  name: "init",
  summary: "write a starter config, reading the order table's columns",
  help: `Usage: image-agent init --database PATH --images DIR [OPTIONS]

Writes a starter config (default ./image-agent.json). It opens the shop's
SQLite database, reads the order table's columns and fills in the mapping it
recognises; check the result before the first run.

Options:
      --database PATH    the shop's SQLite file (required)
      --images DIR       the folder of HD images (required)
      --table NAME       the order table (default: found by name)
      --backup-dir DIR   a local or NAS folder for the copies (target "local")
      --target T         local, baidu or none (default: local)
      --state DIR        the agent's state folder (default: next to the config)
      --out PATH         where to write the config (default ./image-agent.json)
      --force            overwrite an existing config
${COMMON_HELP}

${EXIT_CODES_HELP}
`,
  async run(deps, argv) {
    const { values } = parseCommandArgs("init", argv, {
      database: { type: "string" },
      images: { type: "string" },
      table: { type: "string" },
      "backup-dir": { type: "string" },
      target: { type: "string" },
      state: { type: "string" },
      out: { type: "string" },
      force: { type: "boolean" },
    });
    if (!values.database) throw new UsageError("init needs --database PATH");
    if (!values.images) throw new UsageError("init needs --images DIR");
    const target = values.target ?? "local";
    if (!["local", "baidu", "none"].includes(target)) {
      throw new UsageError(
        `--target must be local, baidu or none, not "${target}"`,
      );
    }
    const out = resolve(values.out ?? values.config ?? "image-agent.json");
    const exists = await Deno.stat(out).then(() => true, () => false);
    if (exists && !values.force) {
      throw new UsageError(
        `A config already exists at ${out}; not overwritten`,
        {
          hint: "use --force to replace it, or --out PATH to write elsewhere",
        },
      );
    }
    const dbPath = resolve(values.database);
    if (!(await Deno.stat(dbPath).then((s) => s.isFile, () => false))) {
      throw new ConfigError(
        `The shop database "${dbPath}" does not exist`,
        "database.path",
      );
    }
    const db = new DatabaseSync(dbPath, { readOnly: true });
    let table: string;
    let columns: string[];
    try {
      const tables = (db.prepare(
        `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`,
      ).all() as { name: string }[]).map((t) => t.name);
      table = values.table ?? pick(tables, TABLE_GUESSES) ?? "";
      if (!table || !tables.includes(table)) {
        throw new ConfigError(
          values.table
            ? `The shop database has no table "${values.table}" (it has ${
              tables.join(", ")
            })`
            : `Cannot tell which table holds the orders (tables: ${
              tables.join(", ")
            })`,
          "orders.table",
          { hint: "pass --table NAME" },
        );
      }
      const problem = identifierProblem(table);
      if (problem) {
        throw new ConfigError(`Table name ${problem}`, "orders.table");
      }
      const info = db.prepare(`PRAGMA table_info(${quoteIdent(table)})`)
        .all() as {
          name: string;
          pk: number;
        }[];
      columns = info.map((c) => c.name);
      const pk = info.find((c) => c.pk === 1)?.name;
      const mapping = {
        table,
        key: pk ?? pick(columns, GUESSES.key) ?? "id",
        orderNo: pick(columns, GUESSES.orderNo),
        status: pick(columns, GUESSES.status),
        hdImage: pick(columns, GUESSES.hdImage),
        shippedAt: pick(columns, GUESSES.shippedAt) ?? "shipped_at",
        shippedStatuses: ["shipped", "processing"],
      };
      const missing = (["orderNo", "status", "hdImage"] as const).filter((k) =>
        !mapping[k]
      );
      const base = dirname(out);
      const rel = (p: string) => {
        const r = relative(base, resolve(p));
        return r === "" ? "." : r;
      };
      const config: Record<string, unknown> = {
        database: { driver: "sqlite", path: rel(dbPath) },
        orders: {
          ...mapping,
          orderNo: mapping.orderNo ?? "order_no",
          status: mapping.status ?? "status",
          hdImage: mapping.hdImage ?? "hd_image",
        },
        images: { root: rel(values.images) },
        cleanup: { afterDays: 10 },
        backup: {
          target,
          required: true,
          retentionDays: 365,
          ...(target === "local"
            ? {
              local: {
                dir: values["backup-dir"]
                  ? rel(values["backup-dir"])
                  : "hd-backup",
              },
            }
            : {}),
          ...(target === "baidu"
            ? {
              baidu: {
                appKey: "",
                secretKey: "",
                folder: "/apps/image-agent/hd",
              },
            }
            : {}),
        },
        state: { dir: values.state ? rel(values.state) : "image-agent-state" },
        schedule: { cron: "0 2 * * *" },
      };
      await Deno.mkdir(dirname(out), { recursive: true });
      await Deno.writeTextFile(out, JSON.stringify(config, null, 2) + "\n", {
        mode: 0o600,
      });
      if (values.json) {
        printJson(deps, {
          config: out,
          columns,
          mapping: config.orders,
          missing,
        });
      } else {
        deps.stdout(`Wrote ${out}\n`);
        deps.stdout(
          `Order table "${table}": ${columns.join(", ")}\n`,
        );
        for (const k of missing) {
          deps.log.warn(
            `could not recognise the orders.${k} column; set it in ${out}`,
          );
        }
        deps.stdout(
          `Next: check the mapping, then run 'image-agent migrate --config ${out}'\n`,
        );
      }
      return missing.length > 0 ? 2 : 0;
    } finally {
      db.close();
    }
  },
};
