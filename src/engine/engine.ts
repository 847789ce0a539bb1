/**
 * What every engine step receives: the shop, the ledger, the backup target,
 * the config, a clock and a logger. Nothing here reaches for a global, so
 * tests run the engine against a temp SQLite file and a temp folder.
 */

import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import type { IoPool } from "../io/pool.ts";
import type { Ledger } from "../ledger/ledger.ts";
import type { Logger, Progress } from "../log.ts";
import type { Shop } from "../shop/shop.ts";
import type { Storage } from "../storage/storage.ts";

/** The points between the safe steps, where tests inject a crash. */
export type Step = "planned" | "completed" | "deleted" | "cleared";

export interface EngineDeps {
  config: Config;
  shop: Shop;
  ledger: Ledger;
  /** Null when `backup.target` is "none". */
  storage: Storage | null;
  clock: Clock;
  log: Logger;
  /** Worker threads for file work (deleting images). */
  io: IoPool;
  progress?: Progress;
  /** Aborted on SIGTERM / Ctrl-C: the order in hand is finished first. */
  signal?: AbortSignal;
  /** Called after each step is recorded; a test may throw to simulate a crash. */
  afterStep?: (step: Step, orderKeys: string[]) => void;
}

/** One line of what happened (or would happen) to an order, for output. */
export interface OrderOutcome {
  orderNo: string;
  action:
    | "backed_up"
    | "reused"
    | "cleaned"
    | "skipped"
    | "failed"
    | "would_back_up"
    | "would_clean"
    | "would_skip"
    | "held";
  detail?: string;
  size?: number;
}
