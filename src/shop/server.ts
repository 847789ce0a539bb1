/**
 * What the PostgreSQL and MySQL shops share: where to connect (the URL from
 * the config, the password from an environment variable or a file, never
 * required in the config itself), patience with a busy server, the names
 * of order claims, and messages that name the host but never the password.
 */

import { dirname, isAbsolute, resolve } from "node:path";
import type { OrdersConfig, ServerDatabaseConfig } from "../config.ts";
import {
  AgentError,
  ConfigError,
  DatabaseBusyError,
  errorMessage,
} from "../errors.ts";

export interface ServerTarget {
  driver: "postgres" | "mysql";
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Query parameters of the URL (`sslmode`, ...), passed on as they are. */
  params: Record<string, string>;
}

export interface ServerShopOptions {
  target: ServerTarget;
  orders: OrdersConfig;
  busyTimeoutMs: number;
}

const DEFAULT_PORT = { postgres: 5432, mysql: 3306 } as const;

export interface ResolveTargetOptions {
  env?: (name: string) => string | undefined;
  /** The config file, against whose folder a relative passwordFile resolves. */
  configFile?: string;
}

/** Reads the URL and finds the password; throws `ConfigError` naming the key. */
export function resolveServerTarget(
  db: ServerDatabaseConfig,
  options: ResolveTargetOptions = {},
): ServerTarget {
  const env = options.env ?? ((n: string) => Deno.env.get(n));
  if (db.passwordEnv && db.passwordFile) {
    throw new ConfigError(
      `Config keys "database.passwordEnv" and "database.passwordFile" are both set; keep one`,
      "database.passwordFile",
    );
  }
  if (
    db.passwordEnv !== undefined &&
    !/^[A-Za-z_][A-Za-z0-9_]*$/.test(db.passwordEnv)
  ) {
    throw new ConfigError(
      `Config key "database.passwordEnv": "${db.passwordEnv}" is not an environment variable name`,
      "database.passwordEnv",
    );
  }
  let url: URL;
  try {
    url = new URL(db.url);
  } catch {
    throw new ConfigError(
      `Config key "database.url" is not a URL (expected ${db.driver}://USER@HOST:PORT/DATABASE)`,
      "database.url",
    );
  }
  const schemes = db.driver === "postgres"
    ? ["postgres:", "postgresql:"]
    : ["mysql:", "mariadb:"];
  if (!schemes.includes(url.protocol)) {
    throw new ConfigError(
      `Config key "database.url" must start with ${
        schemes[0]
      }// for driver "${db.driver}", not "${url.protocol}//"`,
      "database.url",
    );
  }
  const host = decodeURIComponent(url.hostname).replace(/^\[(.*)\]$/, "$1");
  if (!host) {
    throw new ConfigError(
      `Config key "database.url" names no host`,
      "database.url",
    );
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (!database && db.driver === "mysql") {
    throw new ConfigError(
      `Config key "database.url" names no database (mysql://USER@HOST:PORT/DATABASE)`,
      "database.url",
    );
  }
  const user = decodeURIComponent(url.username);
  if (!user) {
    throw new ConfigError(
      `Config key "database.url" names no user (${db.driver}://USER@HOST:PORT/DATABASE)`,
      "database.url",
    );
  }
  let password = decodeURIComponent(url.password);
  if (db.passwordEnv) {
    const v = env(db.passwordEnv);
    if (v === undefined) {
      throw new ConfigError(
        `Config key "database.passwordEnv": the environment variable "${db.passwordEnv}" is not set`,
        "database.passwordEnv",
      );
    }
    password = v;
  } else if (db.passwordFile) {
    const file = isAbsolute(db.passwordFile) || !options.configFile
      ? db.passwordFile
      : resolve(dirname(options.configFile), db.passwordFile);
    try {
      password = Deno.readTextFileSync(file).replace(/\r?\n$/, "");
    } catch (err) {
      throw new ConfigError(
        `Config key "database.passwordFile": cannot read "${file}": ${
          errorMessage(err)
        }`,
        "database.passwordFile",
        { cause: err },
      );
    }
  }
  const params: Record<string, string> = {};
  url.searchParams.forEach((v, k) => params[k] = v);
  return {
    driver: db.driver,
    host,
    port: url.port ? Number(url.port) : DEFAULT_PORT[db.driver],
    user,
    password,
    database: database || user,
    params,
  };
}

/** `user@host:port/database`, for messages: never the password. */
export function describeTarget(t: ServerTarget): string {
  const host = t.host.includes(":") ? `[${t.host}]` : t.host;
  return `${t.user}@${host}:${t.port}/${t.database}`;
}

/** Removes a password from any text a driver produced. */
export function redact(text: string, t: ServerTarget): string {
  let out = text.replace(/(\w+:\/\/[^:/@\s]*:)[^@\s]*@/g, "$1***@");
  if (t.password.length >= 3) out = out.replaceAll(t.password, "***");
  return out;
}

/**
 * The error for a server that cannot be reached or refuses the login:
 * names the host, never the password. Bad credentials or a missing
 * database are config problems (exit 2); an unreachable server is a
 * runtime failure (exit 1).
 */
export function connectionError(
  err: unknown,
  t: ServerTarget,
  kind: "auth" | "database" | "network",
): AgentError {
  const what = t.driver === "postgres" ? "PostgreSQL" : "MySQL";
  const detail = redact(errorMessage(err), t);
  const where = describeTarget(t);
  if (kind === "auth") {
    return new ConfigError(
      `Cannot log in to the shop database ${where} (${what}): ${detail}`,
      "database.url",
      {
        cause: err,
        hint:
          "check the user in database.url and the password in database.passwordEnv or database.passwordFile",
      },
    );
  }
  if (kind === "database") {
    return new ConfigError(
      `Cannot open the shop database ${where} (${what}): ${detail}`,
      "database.url",
      { cause: err, hint: "check the database name in database.url" },
    );
  }
  return new AgentError(
    `Cannot connect to the shop database at ${where} (${what}): ${detail}`,
    undefined,
    {
      cause: err,
      hint:
        `check that the server runs and accepts connections from this machine on port ${t.port}`,
    },
  );
}

export interface ServerBusyOptions {
  /** What is waited for, for the message: "The shop database". */
  what: string;
  patienceMs: number;
  isBusy: (err: unknown) => boolean;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Runs `fn`, retrying while the server reports a lock wait timeout or a
 * deadlock, with a growing pause, until `patienceMs` has passed; then
 * reports `DatabaseBusyError`. The server's own lock timeout bounds each
 * attempt, so a statement never waits forever behind the shop's writes.
 */
export async function withServerBusyRetry<T>(
  fn: () => Promise<T>,
  options: ServerBusyOptions,
): Promise<T> {
  const sleep = options.sleep ??
    ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const start = Date.now();
  let pause = 50;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!options.isBusy(err)) throw err;
      if (Date.now() - start >= options.patienceMs) {
        throw new DatabaseBusyError(
          `${options.what} stayed locked by another writer for more than ${
            Math.round(options.patienceMs / 1000)
          } s; nothing was changed by this step (${errorMessage(err)})`,
          {
            cause: err,
            hint:
              "try again later, or raise database.busyTimeoutMs; the next run picks up where this one stopped",
          },
        );
      }
      await sleep(pause);
      pause = Math.min(pause * 2, 1000);
    }
  }
}

/** How long the agent waits in all for a busy shop, as SQLite does. */
export function patienceFor(busyTimeoutMs: number): number {
  return Math.max(busyTimeoutMs * 4, 2000);
}

/** SHA-256 of `text`, as bytes. */
export async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)),
  );
}

export async function sha256Hex(text: string): Promise<string> {
  return [...await sha256(text)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/**
 * The 64-bit advisory lock number of one order on PostgreSQL: the first 8
 * bytes of SHA-256("image-agent|table|key"), signed, as decimal text.
 */
export async function advisoryLockId(
  table: string,
  key: string,
): Promise<string> {
  const h = await sha256(`image-agent|${table}|${key}`);
  return new DataView(h.buffer).getBigInt64(0).toString();
}

/**
 * The `GET_LOCK` name of one order on MySQL. Lock names are server-wide
 * and at most 64 characters, so the database, table and key are hashed:
 * "image-agent:" and 40 hex digits of SHA-256 (52 characters).
 */
export async function namedLock(
  database: string,
  table: string,
  key: string,
): Promise<string> {
  const hex = await sha256Hex(`${database}|${table}|${key}`);
  return `image-agent:${hex.slice(0, 40)}`;
}
