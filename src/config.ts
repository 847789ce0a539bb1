/**
 * Loading, defaulting and checking the config file.
 *
 * Lookup order: `--config PATH`, then `IMAGE_AGENT_CONFIG`, then
 * `./image-agent.json`, then `/etc/image-agent/config.json`
 * (`%ProgramData%\image-agent\config.json` on Windows). Relative paths in
 * the file resolve against the file's own folder. Every problem is a
 * `ConfigError` naming the key, and exits 2.
 */

import { dirname, isAbsolute, join, resolve } from "node:path";
import { ConfigError, errorMessage } from "./errors.ts";
import { checkObject, type Schema } from "./config_schema.ts";

export interface SqliteDatabaseConfig {
  driver: "sqlite";
  path: string;
  busyTimeoutMs: number;
}

export interface ServerDatabaseConfig {
  driver: "postgres" | "mysql";
  url: string;
  passwordEnv?: string;
  passwordFile?: string;
  busyTimeoutMs: number;
}

export type DatabaseConfig = SqliteDatabaseConfig | ServerDatabaseConfig;

export interface OrdersConfig {
  table: string;
  key: string;
  orderNo: string;
  status: string;
  hdImage: string;
  shippedAt: string;
  shippedStatuses: string[];
}

export interface BaiduConfig {
  appKey: string;
  secretKey: string;
  folder: string;
  concurrency: number;
  /** Chunk size for VIP accounts in MiB (4 to 32); 0 picks it by file size. */
  chunkSizeMiB: number;
  endpoints: { oauth: string; api: string; upload: string };
}

export interface BackupConfig {
  target: "local" | "baidu" | "none";
  required: boolean;
  retentionDays: number;
  concurrency: number;
  local: { dir: string };
  baidu: BaiduConfig;
}

export interface Config {
  /** Absolute path of the file this came from. */
  file: string;
  database: DatabaseConfig;
  orders: OrdersConfig;
  images: { root: string };
  cleanup: { afterDays: number; batchSize: number };
  backup: BackupConfig;
  state: { dir: string };
  schedule: { cron: string; timezone: string; randomizedDelaySec: number };
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Plain SQL identifiers only: letters, digits and `_`, not starting with a digit. */
export function identifierProblem(name: string): string | undefined {
  if (!IDENT.test(name) || name.length > 63) {
    return `"${name}" is not a plain SQL identifier (letters, digits and _ only, up to 63 characters)`;
  }
}

const ident = { type: "string", check: identifierProblem } as const;

export const CONFIG_SCHEMA: Schema = {
  database: {
    type: "object",
    required: true,
    fields: {
      driver: {
        type: "string",
        default: "sqlite",
        enum: ["sqlite", "postgres", "mysql"],
      },
      path: { type: "string" },
      url: { type: "string" },
      passwordEnv: { type: "string" },
      passwordFile: { type: "string" },
      busyTimeoutMs: { type: "integer", default: 5000, min: 0, max: 600000 },
    },
  },
  orders: {
    type: "object",
    fields: {
      table: { ...ident, default: "orders" },
      key: { ...ident, default: "id" },
      orderNo: { ...ident, default: "order_no" },
      status: { ...ident, default: "status" },
      hdImage: { ...ident, default: "hd_image" },
      shippedAt: { ...ident, default: "shipped_at" },
      shippedStatuses: {
        type: "strings",
        default: ["shipped", "processing"],
        nonEmpty: true,
      },
    },
  },
  images: {
    type: "object",
    required: true,
    fields: { root: { type: "string", required: true } },
  },
  cleanup: {
    type: "object",
    fields: {
      afterDays: { type: "integer", default: 10, min: 0, max: 36500 },
      batchSize: { type: "integer", default: 64, min: 1, max: 10000 },
    },
  },
  backup: {
    type: "object",
    fields: {
      target: {
        type: "string",
        default: "local",
        enum: ["local", "baidu", "none"],
      },
      required: { type: "boolean", default: true },
      retentionDays: { type: "integer", default: 365, min: 1, max: 36500 },
      concurrency: { type: "integer", default: 4, min: 1, max: 64 },
      local: {
        type: "object",
        fields: { dir: { type: "string" } },
      },
      baidu: {
        type: "object",
        fields: {
          appKey: { type: "string", default: "" },
          secretKey: { type: "string", default: "" },
          folder: { type: "string", default: "/apps/image-agent/hd" },
          concurrency: { type: "integer", default: 3, min: 1, max: 16 },
          chunkSizeMiB: { type: "integer", default: 0, min: 0, max: 32 },
          endpoints: {
            type: "object",
            fields: {
              oauth: { type: "string", default: "https://openapi.baidu.com" },
              api: { type: "string", default: "https://pan.baidu.com" },
              upload: { type: "string", default: "https://d.pcs.baidu.com" },
            },
          },
        },
      },
    },
  },
  state: {
    type: "object",
    fields: { dir: { type: "string" } },
  },
  schedule: {
    type: "object",
    fields: {
      cron: { type: "string", default: "0 2 * * *" },
      timezone: { type: "string", default: "" },
      randomizedDelaySec: { type: "integer", default: 0, min: 0, max: 86400 },
    },
  },
};

/** Where the config is looked for, in order, given the flag and environment. */
export function configCandidates(
  flag: string | undefined,
  env: (name: string) => string | undefined,
  os: string = Deno.build.os,
): string[] {
  if (flag) return [resolve(flag)];
  const fromEnv = env("IMAGE_AGENT_CONFIG");
  if (fromEnv) return [resolve(fromEnv)];
  const system = os === "windows"
    ? join(
      env("ProgramData") ?? "C:\\ProgramData",
      "image-agent",
      "config.json",
    )
    : "/etc/image-agent/config.json";
  return [resolve("image-agent.json"), system];
}

export function defaultStateDir(
  env: (name: string) => string | undefined,
  os: string = Deno.build.os,
): string {
  if (os === "windows") {
    return join(
      env("ProgramData") ?? "C:\\ProgramData",
      "image-agent",
      "state",
    );
  }
  return "/var/lib/image-agent";
}

export interface LoadOptions {
  env?: (name: string) => string | undefined;
  /** Check that the database, image root and backup folder exist. */
  checkPaths?: boolean;
}

export function findConfigFile(
  flag: string | undefined,
  env: (name: string) => string | undefined,
): string {
  const candidates = configCandidates(flag, env);
  for (const c of candidates) {
    if (exists(c)) return c;
  }
  throw new ConfigError(
    `No config file found (looked in ${candidates.join(", ")})`,
    undefined,
    { hint: "write one with 'image-agent init', or pass --config PATH" },
  );
}

export function loadConfig(file: string, options: LoadOptions = {}): Config {
  const env = options.env ?? ((n: string) => Deno.env.get(n));
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (err) {
    throw new ConfigError(
      `Cannot read config file "${file}": ${errorMessage(err)}`,
      undefined,
      { cause: err },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(
      `Config file "${file}" is not valid JSON: ${errorMessage(err)}`,
      undefined,
      { cause: err },
    );
  }
  return parseConfig(raw, file, { ...options, env });
}

/** Checks and completes a parsed config object read from `file`. */
export function parseConfig(
  raw: unknown,
  file: string,
  options: LoadOptions = {},
): Config {
  const env = options.env ?? ((n: string) => Deno.env.get(n));
  const abs = resolve(file);
  const base = dirname(abs);
  const c = checkObject(raw, CONFIG_SCHEMA) as unknown as Config;
  c.file = abs;
  const at = (p: string) => (isAbsolute(p) ? p : resolve(base, p));

  const db = c.database as DatabaseConfig & { path?: string; url?: string };
  if (db.driver === "sqlite") {
    if (!db.path) {
      throw new ConfigError(
        `Config key "database.path" is missing (the SQLite file of the shop)`,
        "database.path",
      );
    }
    db.path = at(db.path);
  } else if (!db.url) {
    throw new ConfigError(
      `Config key "database.url" is missing (needed for driver "${db.driver}")`,
      "database.url",
    );
  }
  c.images.root = at(c.images.root);
  if (c.backup.local.dir) c.backup.local.dir = at(c.backup.local.dir);
  c.state.dir = c.state.dir ? at(c.state.dir) : defaultStateDir(env);
  if (!c.schedule.timezone) c.schedule.timezone = localTimeZone();

  const statuses = new Set(c.orders.shippedStatuses);
  if (statuses.size !== c.orders.shippedStatuses.length) {
    throw new ConfigError(
      `Config key "orders.shippedStatuses" lists a status twice`,
      "orders.shippedStatuses",
    );
  }
  if (c.backup.target === "local" && !c.backup.local.dir) {
    throw new ConfigError(
      `Config key "backup.local.dir" is missing (needed for target "local")`,
      "backup.local.dir",
    );
  }
  if (c.backup.target === "baidu") {
    const b = c.backup.baidu;
    if (!b.appKey) {
      throw new ConfigError(
        `Config key "backup.baidu.appKey" is missing (needed for target "baidu")`,
        "backup.baidu.appKey",
      );
    }
    if (!/^\/apps\/[^/]+(\/.*)?$/.test(b.folder) || b.folder.includes("..")) {
      throw new ConfigError(
        `Config key "backup.baidu.folder" must sit under /apps/<app name>/, not "${b.folder}"`,
        "backup.baidu.folder",
        {
          hint:
            "Baidu lets an app write only inside its own /apps/<app name> folder",
        },
      );
    }
    for (const [k, v] of Object.entries(b.endpoints)) {
      if (!/^https?:\/\/[^\s/]+/.test(v)) {
        throw new ConfigError(
          `Config key "backup.baidu.endpoints.${k}" must be an http(s) address, not "${v}"`,
          `backup.baidu.endpoints.${k}`,
        );
      }
    }
  }
  if (c.schedule.timezone && !isValidTimeZone(c.schedule.timezone)) {
    throw new ConfigError(
      `Config key "schedule.timezone": "${c.schedule.timezone}" is not a known IANA time zone`,
      "schedule.timezone",
    );
  }
  if (options.checkPaths !== false) checkPaths(c);
  return c;
}

function checkPaths(c: Config): void {
  if (c.database.driver === "sqlite" && !isFile(c.database.path)) {
    throw new ConfigError(
      `Config key "database.path": the shop database "${c.database.path}" does not exist`,
      "database.path",
    );
  }
  if (!isDir(c.images.root)) {
    throw new ConfigError(
      `Config key "images.root": the image folder "${c.images.root}" does not exist`,
      "images.root",
    );
  }
  if (c.backup.target === "local" && !isDir(c.backup.local.dir)) {
    throw new ConfigError(
      `Config key "backup.local.dir": the backup folder "${c.backup.local.dir}" does not exist (is the NAS mounted?)`,
      "backup.local.dir",
    );
  }
}

export function localTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

export function isValidTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
}

function isDir(p: string): boolean {
  try {
    return Deno.statSync(p).isDirectory;
  } catch {
    return false;
  }
}
