/**
 * Opens what a command needs from the config: the config itself, the
 * ledger, the shop and the backup target, and closes them again.
 */

import { type Config, findConfigFile, loadConfig } from "../config.ts";
import { IoPool } from "../io/pool.ts";
import { Ledger } from "../ledger/ledger.ts";
import { openShop } from "../shop/open.ts";
import type { Shop } from "../shop/shop.ts";
import { openStorage } from "../storage/open.ts";
import type { Storage } from "../storage/storage.ts";
import type { Deps } from "./command.ts";

export function readConfig(
  deps: Deps,
  flag: string | undefined,
  checkPaths = true,
): Config {
  const file = findConfigFile(flag, deps.env);
  const config = loadConfig(file, { env: deps.env, checkPaths });
  deps.log.debug(`config: ${file}`);
  return config;
}

export interface Context {
  config: Config;
  ledger: Ledger;
  shop: Shop;
  storage: Storage | null;
  /** Worker threads for file copies, hashes and deletions. */
  io: IoPool;
  close(): Promise<void>;
}

export interface OpenContextOptions {
  storage?: boolean;
  shop?: boolean;
}

export async function openContext(
  deps: Deps,
  configFlag: string | undefined,
  options: OpenContextOptions = {},
): Promise<Context> {
  const config = readConfig(deps, configFlag);
  const ledger = Ledger.open(config.state.dir, () => deps.clock.now());
  // Workers start on the first file job, so opening this costs nothing.
  // A local copy waits on the disk (a NAS), so each image in flight gets
  // its own; Baidu's hashing only needs the cores, and each worker costs
  // about 15 MiB.
  const io = new IoPool({
    workers: config.backup.target === "baidu"
      ? Math.min(config.backup.concurrency, navigator.hardwareConcurrency || 2)
      : config.backup.concurrency,
    warn: (m) => deps.log.warn(m),
  });
  let shop: Shop | undefined;
  let storage: Storage | null = null;
  try {
    shop = options.shop === false
      ? (undefined as unknown as Shop)
      : await openShop(config);
    storage = options.storage === false
      ? null
      : await openStorage(config, deps, io);
  } catch (err) {
    await shop?.close();
    ledger.close();
    throw err;
  }
  return {
    config,
    ledger,
    shop: shop!,
    storage,
    io,
    async close() {
      await storage?.close?.();
      await io.close();
      await shop?.close();
      ledger.close();
    },
  };
}
