/** Builds the backup target the config names. */

import type { Config } from "../config.ts";
import type { Deps } from "../cli/command.ts";
import type { IoPool } from "../io/pool.ts";
import type { Storage } from "./storage.ts";
import { LocalStorage } from "./local.ts";
import { openBaiduStorage } from "./baidu/open_baidu.ts";

/** The target, or null for `backup.target: "none"`. */
export function openStorage(
  config: Config,
  deps: Deps,
  io: IoPool,
): Promise<Storage | null> {
  switch (config.backup.target) {
    case "none":
      return Promise.resolve(null);
    case "local":
      return Promise.resolve(
        new LocalStorage(config.backup.local.dir, { io }),
      );
    case "baidu":
      return Promise.resolve(openBaiduStorage(config, deps, io));
  }
}
