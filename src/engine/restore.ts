/**
 * Bringing an order's image back: the copy is streamed into a temp file
 * beside the original path while it is hashed, flushed to disk, checked
 * against the SHA-256 and size in the ledger, and only then renamed into
 * place; then the image column gets its old value back. A download that
 * does not match, a full disk or a broken connection leave nothing behind
 * and change nothing.
 */

import { basename, dirname, join } from "node:path";
import { AgentError, errorMessage } from "../errors.ts";
import { formatBytes } from "../log.ts";
import type { BackupRow } from "../ledger/ledger.ts";
import {
  createHash,
  fsProblem,
  isNotFound,
  randomSuffix,
  removeStaleTemps,
  sha256File,
  syncDir,
  writeStream,
} from "../fsutil.ts";
import {
  isInside,
  lexicalPath,
  OutsideRootError,
  prepareFolder,
} from "./paths.ts";
import type { EngineDeps } from "./engine.ts";

export interface RestoreOutcome {
  orderNo: string;
  status: "restored" | "already_present" | "would_restore" | "failed";
  path?: string;
  size?: number;
  sha256?: string;
  message: string;
}

export interface RestoreOptions {
  dryRun: boolean;
}

/** Restores each order number; one failure does not stop the others. */
export async function restoreOrders(
  d: EngineDeps,
  orderNos: string[],
  options: RestoreOptions,
): Promise<RestoreOutcome[]> {
  const out: RestoreOutcome[] = [];
  for (const orderNo of orderNos) {
    if (d.signal?.aborted) break;
    try {
      out.push(...await restoreOne(d, orderNo, options));
    } catch (err) {
      const message = errorMessage(err);
      d.log.error(`order ${orderNo}: restore failed: ${message}`);
      out.push({ orderNo, status: "failed", message });
    }
  }
  return out;
}

async function restoreOne(
  d: EngineDeps,
  orderNo: string,
  options: RestoreOptions,
): Promise<RestoreOutcome[]> {
  const orders = await d.shop.findByOrderNo(orderNo);
  if (orders.length === 0) {
    throw new AgentError(`There is no order "${orderNo}" in the shop database`);
  }
  // Several orders may share one order number; each is restored, or fails,
  // on its own.
  const results: RestoreOutcome[] = [];
  for (const order of orders) {
    try {
      const rows = d.ledger.byOrderNo(orderNo).filter((r) =>
        r.orderKey === order.key &&
        (r.state === "completed" || r.state === "expired") && r.sha256
      );
      if (rows.length === 0) {
        const present = order.image !== "";
        throw new AgentError(
          present
            ? `Order "${orderNo}" was never cleaned up: its image column still says "${order.image}"`
            : `Order "${orderNo}" has no backup in the ledger; there is nothing to restore`,
        );
      }
      results.push(await restoreRow(d, rows[0], options));
    } catch (err) {
      if (orders.length === 1) throw err;
      const message = `${errorMessage(err)} (order key ${order.key})`;
      d.log.error(`order ${orderNo}: restore failed: ${message}`);
      results.push({ orderNo, status: "failed", message });
    }
  }
  return results;
}

async function restoreRow(
  d: EngineDeps,
  row: BackupRow,
  options: RestoreOptions,
): Promise<RestoreOutcome> {
  const root = await Deno.realPath(d.config.images.root);
  const wanted = lexicalPath(root, row.image, d.config.images.root);
  if (!isInside(root, wanted)) {
    throw new AgentError(
      `The recorded path "${row.image}" of order "${row.orderNo}" lies outside images.root (${root}); not restored`,
    );
  }
  // The folder as it is now: a part of it replaced by a symlink that leads
  // out of the root since the image was cleaned is refused, never followed.
  const folderAt = async (create: boolean) => {
    try {
      return await prepareFolder(root, dirname(wanted), create);
    } catch (err) {
      if (err instanceof OutsideRootError) {
        throw new AgentError(
          `Cannot restore order "${row.orderNo}" to ${wanted}: ${err.message}; not restored`,
        );
      }
      throw err;
    }
  };
  const folderNow = await folderAt(false);
  let dest = join(folderNow ?? dirname(wanted), basename(wanted));

  const existing = folderNow === null
    ? null
    : await Deno.stat(dest).catch((err) => {
      if (isNotFound(err)) return null;
      throw err;
    });
  if (existing) {
    const { sha256 } = await sha256File(dest);
    if (sha256 !== row.sha256) {
      throw new AgentError(
        `A different file already exists at ${dest}; move it away first, then restore again`,
      );
    }
    if (!options.dryRun) {
      await d.shop.restoreImage(row.orderKey, row.image);
      if (row.localState !== "present") {
        d.ledger.transaction(() => d.ledger.markRestored(row.id));
      }
    }
    d.log.info(
      `order ${row.orderNo}: the image is already in place at ${dest}`,
    );
    return {
      orderNo: row.orderNo,
      status: "already_present",
      path: dest,
      size: row.size ?? undefined,
      sha256: row.sha256!,
      message: `already in place at ${dest}`,
    };
  }

  if (row.state === "expired") {
    throw new AgentError(
      `The backup of order "${row.orderNo}" expired on ${row.expiredAt} UTC (backup.retentionDays = ${d.config.backup.retentionDays}) and was removed from ${row.target}; it cannot be restored`,
    );
  }
  const storage = d.storage;
  if (!storage) {
    throw new AgentError(
      `Order "${row.orderNo}" was backed up to ${row.target}, but backup.target is "none" now`,
      undefined,
      { hint: `set backup.target back to "${row.target}" to restore it` },
    );
  }
  if (storage.name !== row.target) {
    throw new AgentError(
      `Order "${row.orderNo}" was backed up to ${row.target}, but backup.target is "${storage.name}" now`,
      undefined,
      { hint: `set backup.target back to "${row.target}" to restore it` },
    );
  }
  if (options.dryRun) {
    d.log.info(
      `order ${row.orderNo}: would restore ${row.remotePath} (${
        formatBytes(row.size ?? 0)
      }) to ${dest}`,
    );
    return {
      orderNo: row.orderNo,
      status: "would_restore",
      path: dest,
      size: row.size ?? undefined,
      sha256: row.sha256!,
      message: `would restore to ${dest}`,
    };
  }

  dest = join((await folderAt(true))!, basename(wanted));
  // A restore killed mid-download left its temp file here (we hold the lock).
  await removeStaleTemps(dest, ".restore-");
  const temp = join(
    dirname(dest),
    `.${basename(dest)}.restore-${randomSuffix()}`,
  );
  try {
    const hash = createHash("sha256");
    let size = 0;
    d.progress?.start(`restoring order ${row.orderNo}`, row.size ?? 0);
    try {
      const stream = await storage.open(row.remotePath!, {
        signal: d.signal,
        onProgress: (n) => d.progress?.advance(n),
      });
      using out = await Deno.open(temp, {
        write: true,
        createNew: true,
        mode: 0o644,
      });
      size = await writeStream(out, stream, (piece) => hash.update(piece));
      await out.sync();
    } finally {
      d.progress?.finish();
    }
    const sha256 = hash.digest("hex");
    if (sha256 !== row.sha256 || size !== row.size) {
      throw new AgentError(
        `The downloaded copy of order "${row.orderNo}" does not match the ledger (${
          size !== row.size
            ? `size ${size} instead of ${row.size}`
            : "SHA-256 differs"
        }); nothing was changed`,
        undefined,
        { hint: "try again; if it keeps failing the remote copy is damaged" },
      );
    }
    await Deno.rename(temp, dest);
    syncDir(dirname(dest));
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    const problem = fsProblem(err);
    if (problem) {
      throw new AgentError(
        `Cannot write the restored image to ${dest}: ${problem}; nothing was changed`,
        undefined,
        { cause: err },
      );
    }
    throw err;
  }

  const columnSet = await d.shop.restoreImage(row.orderKey, row.image);
  d.ledger.transaction(() => d.ledger.markRestored(row.id));
  if (!columnSet) {
    d.log.warn(
      `order ${row.orderNo}: the image column already holds another value; the file was restored but the column was left as it is`,
    );
  }
  d.log.info(
    `order ${row.orderNo}: restored ${dest} (${
      formatBytes(row.size ?? 0)
    }), SHA-256 verified; kept for ${d.config.cleanup.afterDays} day(s) before it is cleaned again`,
  );
  return {
    orderNo: row.orderNo,
    status: "restored",
    path: dest,
    size: row.size ?? undefined,
    sha256: row.sha256!,
    message: `restored to ${dest}`,
  };
}
