/**
 * Retention: remote copies older than `backup.retentionDays` are deleted
 * in batches and their rows marked `expired`. Only copies whose local file
 * is gone are considered; an image that is back on disk keeps its copy, and
 * a copy that another order's backup still counts on (the same bytes found
 * already in place) stays until that backup expires too.
 */

import { DAY_MS } from "../clock.ts";
import { errorMessage } from "../errors.ts";
import type { EngineDeps } from "./engine.ts";

export interface PruneResult {
  expired: number;
  failed: number;
  dryRun: boolean;
  orders: string[];
  errors: string[];
}

const BATCH = 100;

export async function pruneExpired(
  d: EngineDeps,
  options: { dryRun: boolean },
): Promise<PruneResult> {
  const result: PruneResult = {
    expired: 0,
    failed: 0,
    dryRun: options.dryRun,
    orders: [],
    errors: [],
  };
  const storage = d.storage;
  if (!storage) return result;
  const before = new Date(
    d.clock.now().getTime() - d.config.backup.retentionDays * DAY_MS,
  );
  for (;;) {
    if (d.signal?.aborted) break;
    const rows = d.ledger.expiring(
      storage.name,
      before,
      options.dryRun ? 100000 : BATCH,
    );
    if (rows.length === 0) break;
    if (options.dryRun) {
      for (const r of rows) {
        d.log.info(
          `order ${r.orderNo}: would remove ${r.remotePath} (backed up ${r.completedAt} UTC)`,
        );
        result.orders.push(r.orderNo);
        result.expired++;
      }
      break;
    }
    const batch = new Set(rows.map((r) => r.id));
    const kept = new Map<string, string[]>();
    const paths = new Set<string>();
    for (const r of rows) {
      const others = d.ledger.holdersOf(storage.name, r.remotePath!)
        .filter((h) => !batch.has(h.id));
      if (others.length > 0) {
        kept.set(r.remotePath!, others.map((h) => h.orderNo));
      } else paths.add(r.remotePath!);
    }
    try {
      await storage.remove([...paths], d.signal);
    } catch (err) {
      const message = `Removing ${rows.length} expired copies failed: ${
        errorMessage(err)
      }`;
      d.log.error(message);
      result.errors.push(message);
      result.failed += rows.length;
      break;
    }
    d.ledger.transaction(() => {
      for (const r of rows) d.ledger.markExpired(r.id);
    });
    for (const r of rows) {
      result.orders.push(r.orderNo);
      const holders = kept.get(r.remotePath!);
      d.log.info(
        holders
          ? `order ${r.orderNo}: its backup expired; the remote copy ${r.remotePath} stays for order(s) ${
            holders.join(", ")
          }`
          : `order ${r.orderNo}: removed the remote copy ${r.remotePath} (retention)`,
      );
    }
    result.expired += rows.length;
  }
  return result;
}
