/**
 * One pass over the eligible orders: `run` (back up, then clean up),
 * `backup` only, or `cleanup` only.
 *
 * For each order the steps are, each recorded in the ledger (one committed
 * transaction per batch) before the next begins:
 *
 * 1. plan: the order is eligible and its path resolves inside
 *    `images.root`, or it is skipped with the reason;
 * 2. upload and verify (the target's `put` resolves only once verified);
 * 3. record `completed`;
 * 4. delete the local file, record it;
 * 5. clear the image column, record it.
 *
 * A crash between two steps leaves a row the next pass finishes: a pending
 * upload is sent again (or resumed, or recognised as already there), a
 * completed one is deleted, a deleted one has its column cleared. Nothing is
 * deleted unless its copy is recorded complete and verified.
 */

import { basename, dirname, join } from "node:path";
import { DAY_MS, parseSqlTime } from "../clock.ts";
import {
  ConfigError,
  errorMessage,
  InterruptedError,
  StorageError,
} from "../errors.ts";
import { formatBytes } from "../log.ts";
import type { BackupRow, RunSummary } from "../ledger/ledger.ts";
import type { Order } from "../shop/shop.ts";
import type { PutResult, UploadSource } from "../storage/storage.ts";
import {
  fsProblem,
  isNotFound,
  randomSuffix,
  sha256File,
  syncDirAsync,
} from "../fsutil.ts";
import { isInside, lexicalPath, type Resolved, resolveImage } from "./paths.ts";
import type { EngineDeps, OrderOutcome } from "./engine.ts";
import { forEachLimited } from "./pool.ts";
import { checkLedgerIdentity } from "./ledger_guard.ts";
import { putBack } from "../io/jobs.ts";

export type PassMode = "run" | "backup" | "cleanup";

export interface PassOptions {
  mode: PassMode;
  dryRun: boolean;
  /** Take this ledger as the one of record though its markers disagree. */
  acceptNewLedger?: boolean;
}

export interface PassResult {
  summary: RunSummary;
  outcomes: OrderOutcome[];
  /** Why the pass stopped early (quota full, interrupted), if it did. */
  stopped?: string;
  errors: string[];
}

type FileInfo = Extract<Resolved, { kind: "file" }>;

interface Work {
  order: Order;
  /** The resolved local path (real path when the file exists). */
  path: string;
  file?: FileInfo;
  row?: BackupRow;
  action: "upload" | "delete" | "clear" | "delete-unbacked";
  result?: PutResult;
  error?: unknown;
  /** Set when the file stays because other orders still name it. */
  keptFor?: string[];
  /** Set when the file was gone by the time it was to be deleted. */
  alreadyGone?: boolean;
}

/** Bytes uploaded before their completions are committed and deleted. */
const SUB_BATCH_BYTES = 256 * 1024 * 1024;

export async function runPass(
  d: EngineDeps,
  options: PassOptions,
): Promise<PassResult> {
  return await new Pass(d, options).execute();
}

class Pass {
  readonly d: EngineDeps;
  readonly mode: PassMode;
  readonly dryRun: boolean;
  readonly acceptNewLedger: boolean;
  readonly now: Date;
  readonly deleting: boolean;
  readonly uploading: boolean;
  readonly target: string;
  summary: RunSummary;
  outcomes: OrderOutcome[] = [];
  errors: string[] = [];
  stopped?: string;
  realRoot = "";
  #namersIndex?: Promise<Map<string, string[]>>;
  /** Orders whose column this pass emptied: they name no file any more. */
  #clearedKeys = new Set<string>();

  constructor(d: EngineDeps, options: PassOptions) {
    this.d = d;
    this.mode = options.mode;
    this.dryRun = options.dryRun;
    this.acceptNewLedger = options.acceptNewLedger ?? false;
    this.now = d.clock.now();
    this.deleting = options.mode !== "backup";
    this.uploading = options.mode !== "cleanup";
    this.target = d.storage?.name ?? "none";
    this.summary = {
      eligible: 0,
      backedUp: 0,
      cleaned: 0,
      failed: 0,
      skipped: 0,
      freedBytes: 0,
      dryRun: options.dryRun,
    };
  }

  get #afterMs(): number {
    return this.d.config.cleanup.afterDays * DAY_MS;
  }

  #say(
    outcome: OrderOutcome,
    message: string,
    level: "info" | "warn" | "error" = "info",
  ) {
    this.outcomes.push(outcome);
    this.d.log[level](`order ${outcome.orderNo}: ${message}`);
  }

  async execute(): Promise<PassResult> {
    const { config, storage } = this.d;
    if (this.deleting && !storage && config.backup.required) {
      throw new ConfigError(
        `Refusing to delete images: backup.target is "none" and backup.required is true`,
        "backup.required",
        {
          hint:
            'set backup.target to "local" or "baidu" (with its settings), or set backup.required to false to delete images without any copy',
        },
      );
    }
    try {
      this.realRoot = await Deno.realPath(config.images.root);
    } catch (err) {
      throw new ConfigError(
        `Config key "images.root": cannot open the image folder "${config.images.root}": ${
          errorMessage(err)
        }`,
        "images.root",
      );
    }

    // A lost ledger must not go on deleting (see ledger_guard.ts).
    await checkLedgerIdentity(this.d, {
      write: !this.dryRun,
      accept: this.acceptNewLedger,
      enforce: this.deleting,
    });
    if (this.deleting && !this.dryRun) await this.#finishInterruptedClears();

    const cutoff = this.mode === "backup"
      ? this.now
      : new Date(this.now.getTime() - this.#afterMs);
    let afterKey: string | undefined;
    while (!this.stopped) {
      if (this.d.signal?.aborted) {
        this.stopped = "interrupted";
        break;
      }
      const page = await this.d.shop.eligible({
        shippedBefore: cutoff,
        afterKey,
        limit: config.cleanup.batchSize,
      });
      if (page.length === 0) break;
      afterKey = page[page.length - 1].key;
      const claimed = new Set(await this.d.shop.claim(page.map((o) => o.key)));
      try {
        await this.#processPage(page.filter((o) => claimed.has(o.key)));
      } catch (err) {
        // A stop asked for while a call was waiting on the target (the
        // space check, say): what is recorded stands, the rest is next run's.
        if (!(err instanceof InterruptedError)) throw err;
        this.stopped = "interrupted";
      } finally {
        await this.d.shop.release([...claimed]);
      }
    }
    return {
      summary: this.summary,
      outcomes: this.outcomes,
      stopped: this.stopped,
      errors: this.errors,
    };
  }

  /** Rows whose file was deleted by a run that stopped before clearing. */
  async #finishInterruptedClears(): Promise<void> {
    const rows = this.d.ledger.deletedNotCleared();
    if (rows.length === 0) return;
    this.d.log.info(
      `Finishing ${rows.length} order(s) whose image was deleted by an interrupted run`,
    );
    await this.#clear(rows);
  }

  async #processPage(orders: Order[]): Promise<void> {
    const works: Work[] = [];
    const skips: { order: Order; path: string; reason: string }[] = [];
    // Resolving a path only reads the file system: do a few at a time rather
    // than one round trip after another.
    const resolved: Resolved[] = new Array(orders.length);
    await forEachLimited(
      orders,
      Math.max(8, this.d.config.backup.concurrency),
      async (order, i) => {
        resolved[i] = await resolveImage(
          this.realRoot,
          order.image,
          this.d.config.images.root,
        );
      },
    );
    for (const [i, order] of orders.entries()) {
      const held = this.#heldAfterRestore(order);
      if (held) {
        this.outcomes.push({
          orderNo: order.orderNo,
          action: "held",
          detail: held,
        });
        this.d.log.debug(`order ${order.orderNo}: ${held}`);
        continue;
      }
      this.summary.eligible++;
      const r = resolved[i];
      const row = this.d.ledger.find(order.key, order.image);
      if (r.kind === "refused") {
        skips.push({ order, path: r.path, reason: r.reason });
        continue;
      }
      if (r.kind === "missing") {
        if (row?.state === "completed" && this.deleting) {
          works.push({ order, path: r.path, row, action: "clear" });
        } else if (row?.state === "completed") {
          continue; // backed up and already gone: nothing for a backup pass
        } else {
          skips.push({
            order,
            path: r.path,
            reason: "the image file is missing",
          });
        }
        continue;
      }
      const work = await this.#planExisting(order, r, row);
      if (work) works.push(work);
    }

    if (this.dryRun) {
      this.#describeDryRun(works, skips);
      return;
    }

    this.d.ledger.transaction(() => {
      for (const s of skips) {
        this.d.ledger.skip(this.#fields(s.order, s.path), s.reason);
      }
      for (const w of works) {
        if (w.action === "upload" || w.action === "delete-unbacked") {
          w.row = this.d.ledger.plan(this.#fields(w.order, w.path));
        }
      }
    });
    for (const s of skips) {
      this.summary.skipped++;
      this.#say(
        { orderNo: s.order.orderNo, action: "skipped", detail: s.reason },
        `skipped: ${s.reason} (${s.path})`,
        "warn",
      );
    }
    this.d.afterStep?.("planned", works.map((w) => w.order.key));

    if (this.uploading) await this.#admit(works);
    const uploads = works.filter((w) => w.action === "upload");
    const others = works.filter((w) => w.action !== "upload");
    if (others.length > 0 && this.deleting) await this.#deleteAndClear(others);
    for (const batch of subBatches(uploads)) {
      if (this.stopped) break;
      await this.#upload(batch);
      const done = batch.filter((w) => w.result);
      if (this.deleting && !this.stopped && done.length > 0) {
        await this.#deleteAndClear(done);
      }
    }
  }

  #heldAfterRestore(order: Order): string | undefined {
    if (this.mode === "backup") return undefined;
    const restoredAt = this.d.ledger.lastRestore(order.key);
    if (!restoredAt) return undefined;
    const until = parseSqlTime(restoredAt).getTime() + this.#afterMs;
    if (until <= this.now.getTime()) return undefined;
    return `restored on ${restoredAt} UTC; kept until ${
      new Date(until).toISOString().slice(0, 16).replace("T", " ")
    } UTC`;
  }

  /** Decides what an order whose file exists needs. */
  async #planExisting(
    order: Order,
    file: FileInfo,
    row: BackupRow | undefined,
  ): Promise<Work | undefined> {
    const base = { order, path: file.path, file, row };
    if (!this.d.storage) {
      if (this.mode === "backup") return undefined;
      return { ...base, action: "delete-unbacked" };
    }
    if (row?.state === "completed" && row.size === file.size && row.sha256) {
      if (!this.deleting) return undefined; // already backed up
      if (this.dryRun) return { ...base, action: "delete" };
      // The file is back (restored) or its deletion was interrupted: delete it
      // again only if it is byte for byte the copy we hold.
      const { sha256 } = await sha256File(file.path);
      if (sha256 === row.sha256) {
        const remote = await this.d.storage.stat(row.remotePath!);
        if (remote && remote.size === row.size) {
          return { ...base, action: "delete" };
        }
        this.d.log.warn(
          `order ${order.orderNo}: the recorded copy ${row.remotePath} is missing from ${this.d.storage.describe()}; backing it up again`,
        );
      }
    }
    if (!this.uploading) {
      this.summary.skipped++;
      this.#say(
        {
          orderNo: order.orderNo,
          action: "skipped",
          detail: "no completed backup yet",
        },
        "not cleaned: no completed backup yet (run 'image-agent backup' or 'run')",
      );
      return undefined;
    }
    return { ...base, action: "upload" };
  }

  #fields(order: Order, path: string) {
    return {
      orderKey: order.key,
      orderNo: order.orderNo,
      image: order.image,
      path,
      target: this.target,
    };
  }

  #source(w: Work): UploadSource {
    return {
      orderNo: w.order.orderNo || `key-${w.order.key}`,
      path: w.path,
      fileName: basename(w.path),
      size: w.file!.size,
    };
  }

  #describeDryRun(
    works: Work[],
    skips: { order: Order; path: string; reason: string }[],
  ): void {
    for (const s of skips) {
      this.summary.skipped++;
      this.#say(
        { orderNo: s.order.orderNo, action: "would_skip", detail: s.reason },
        `would skip: ${s.reason} (${s.path})`,
      );
    }
    for (const w of works) {
      const size = w.file?.size ?? w.row?.size ?? 0;
      if (w.action === "upload") {
        this.summary.backedUp++;
        this.#say(
          { orderNo: w.order.orderNo, action: "would_back_up", size },
          `would back up ${w.path} (${formatBytes(size)}) to ${
            this.d.storage!.describe()
          }`,
        );
      }
      if (this.deleting) {
        this.summary.cleaned++;
        if (w.file) this.summary.freedBytes += size;
        const how = w.action === "clear"
          ? "would clear the image column (file already gone)"
          : w.action === "delete-unbacked"
          ? `would delete ${w.path} WITHOUT a backup (backup.required is false) and clear the image column`
          : `would delete ${w.path} and clear the image column`;
        this.#say(
          { orderNo: w.order.orderNo, action: "would_clean", size },
          how,
        );
      }
    }
  }

  /** Asks the target whether the uploads fit, before any byte is sent. */
  async #admit(works: Work[]): Promise<void> {
    const uploads = works.filter((w) => w.action === "upload");
    if (uploads.length === 0 || !this.d.storage) return;
    const admission = await this.d.storage.admit(
      uploads.map((w) => this.#source(w)),
      this.d.signal,
    );
    const rejected = uploads.filter((w) => admission.rejected.has(w.path));
    if (rejected.length > 0) {
      this.d.ledger.transaction(() => {
        for (const w of rejected) {
          this.d.ledger.skip(
            this.#fields(w.order, w.path),
            admission.rejected.get(w.path)!,
          );
        }
      });
      for (const w of rejected) {
        this.summary.skipped++;
        this.#say(
          {
            orderNo: w.order.orderNo,
            action: "skipped",
            detail: admission.rejected.get(w.path),
          },
          `skipped: ${admission.rejected.get(w.path)}`,
          "warn",
        );
      }
      works.splice(
        0,
        works.length,
        ...works.filter((w) => !rejected.includes(w)),
      );
    }
    if (admission.shortBy !== undefined && admission.shortBy > 0) {
      const message =
        `The backup target ${this.d.storage.describe()} does not have room for this batch: ${
          formatBytes(admission.shortBy)
        } more free space is needed; nothing was uploaded or deleted`;
      this.stopped = message;
      this.errors.push(message);
      this.d.log.error(message);
      works.splice(0, works.length);
    }
  }

  async #upload(batch: Work[]): Promise<void> {
    const storage = this.d.storage!;
    const total = batch.reduce((a, w) => a + w.file!.size, 0);
    this.d.progress?.start(
      `backing up ${batch.length} image(s)`,
      total,
    );
    await forEachLimited(
      batch,
      this.d.config.backup.concurrency,
      async (w) => {
        try {
          w.result = await storage.put(this.#source(w), {
            resume: this.d.ledger.resumeSlot(w.row!.id),
            replace: this.#ownEarlierCopy(w.row!),
            onProgress: (n) => this.d.progress?.advance(n),
          });
        } catch (err) {
          w.error = err;
          if (err instanceof StorageError && err.failure === "stop") {
            this.stopped ??= err.message;
          }
        }
      },
      () => this.stopped !== undefined || this.d.signal?.aborted === true,
    );
    this.d.progress?.finish();
    if (this.d.signal?.aborted) this.stopped ??= "interrupted";

    this.d.ledger.transaction(() => {
      for (const w of batch) {
        if (w.result) {
          this.d.ledger.complete(w.row!.id, w.result);
        } else if (w.error !== undefined) {
          const failure = w.error instanceof StorageError
            ? w.error.failure
            : "retry";
          const reason = errorMessage(w.error);
          if (failure === "skip") {
            this.d.ledger.skip(this.#fields(w.order, w.path), reason);
          } else {
            this.d.ledger.fail(w.row!.id, reason);
          }
        }
      }
    });
    for (const w of batch) {
      if (w.result) {
        w.row = this.d.ledger.byId(w.row!.id);
        this.summary.backedUp++;
        this.#say(
          {
            orderNo: w.order.orderNo,
            action: w.result.reused ? "reused" : "backed_up",
            size: w.result.size,
          },
          `${w.result.reused ? "already backed up" : "backed up"} ${w.path} (${
            formatBytes(w.result.size)
          }) to ${storage.name}:${w.result.remotePath}, verified by ${w.result.verifiedBy}`,
        );
      } else if (w.error !== undefined) {
        const skip = w.error instanceof StorageError &&
          w.error.failure === "skip";
        const reason = errorMessage(w.error);
        if (skip) this.summary.skipped++;
        else {
          this.summary.failed++;
          this.errors.push(`order ${w.order.orderNo}: ${reason}`);
        }
        this.#say(
          {
            orderNo: w.order.orderNo,
            action: skip ? "skipped" : "failed",
            detail: reason,
          },
          `${skip ? "skipped" : "backup failed"}: ${reason}`,
          skip ? "warn" : "error",
        );
      }
    }
    this.d.afterStep?.(
      "completed",
      batch.filter((w) => w.result).map((w) => w.order.key),
    );
  }

  /**
   * The copy this row made of an earlier version of its image, which the
   * new copy may replace: only when no other backup counts on it.
   */
  #ownEarlierCopy(row: BackupRow): string | undefined {
    if (!row.remotePath || row.target !== this.target) return undefined;
    const others = this.d.ledger.holdersOf(this.target, row.remotePath)
      .filter((h) => h.id !== row.id);
    return others.length === 0 ? row.remotePath : undefined;
  }

  /** Steps 4 and 5 for works whose copy is recorded complete. */
  async #deleteAndClear(works: Work[]): Promise<void> {
    // The files are removed a few at a time (their completions are already
    // committed); the outcome of each is kept in order for the ledger.
    const gone: boolean[] = new Array(works.length).fill(false);
    const cleanedTogether = new Set(works.map((w) => w.order.key));
    await forEachLimited(
      works,
      this.d.config.backup.concurrency,
      async (w, i) => {
        gone[i] = await this.#deleteOne(w, cleanedTogether);
      },
    );
    const deleted = works.filter((_, i) => gone[i]);
    const dirs = new Set(
      deleted.filter((w) => w.action !== "clear").map((w) => dirname(w.path)),
    );
    await Promise.all([...dirs].map(syncDirAsync));
    if (deleted.length === 0) return;
    this.d.ledger.transaction(() => {
      for (const w of deleted) {
        if (w.action === "delete-unbacked") {
          this.d.ledger.skip(
            this.#fields(w.order, w.path),
            "deleted without a backup (backup.required is false)",
          );
        }
        this.d.ledger.markDeleted(
          w.row!.id,
          w.keptFor
            ? `${w.path} kept on disk: order(s) with key ${
              w.keptFor.join(", ")
            } still name it`
            : undefined,
        );
      }
    });
    for (const w of deleted) {
      if (w.action !== "clear" && !w.keptFor && !w.alreadyGone) {
        this.summary.freedBytes += w.file?.size ?? 0;
      }
    }
    this.d.afterStep?.("deleted", deleted.map((w) => w.order.key));
    await this.#clear(deleted.map((w) => this.d.ledger.byId(w.row!.id)!));
  }

  /**
   * Which orders name each file under the root, by file identity, from
   * every image column that is not empty: built once, before the first
   * deletion of the pass (`a.png` and `./a.png`, a folder reached through a
   * symlink and a symlink to the file itself all name one file). Columns
   * the shop changes during the pass are caught in their exact words by
   * `othersNamingImage`.
   */
  #namers(): Promise<Map<string, string[]>> {
    return this.#namersIndex ??= (async () => {
      const cfg = this.d.config.images.root;
      const inside = (await this.d.shop.imagesInUse())
        .filter((r) => !r.image.includes("\0"))
        .map((r) => ({
          key: r.key,
          path: lexicalPath(this.realRoot, r.image, cfg),
        }))
        .filter((r) => isInside(this.realRoot, r.path));
      const paths = inside.map((r) => r.path);
      const per = Math.max(256, Math.ceil(paths.length / this.d.io.size || 1));
      const jobs = [];
      for (let i = 0; i < paths.length; i += per) {
        jobs.push(
          this.d.io.run({ kind: "identify", paths: paths.slice(i, i + per) }),
        );
      }
      const ids = (await Promise.all(jobs)).flatMap((j) => j.ids);
      const index = new Map<string, string[]>();
      inside.forEach((r, i) => {
        const id = ids[i];
        if (id === null) return;
        const keys = index.get(id);
        if (keys) keys.push(r.key);
        else index.set(id, [r.key]);
      });
      return index;
    })();
  }

  /**
   * Step 4 for one work: deletes the file unless it changed since its
   * backup. True when the file is gone (or was already) and the deletion
   * is to be recorded.
   */
  async #deleteOne(w: Work, cleanedTogether: Set<string>): Promise<boolean> {
    // The file is already gone: record and clear, once any copy a killed
    // run set aside is settled.
    if (w.action === "clear") return await this.#settleSetAside(w);
    if (!w.file?.link) {
      // A file other orders still name, in the same words or in others, stays
      // until the last of them is cleaned; orders cleaned in this same batch
      // let it go together.
      const sameWords = await this.d.shop.othersNamingImage(
        w.order.key,
        w.order.image,
      );
      const otherWords = (await this.#namers()).get(w.file!.id) ?? [];
      const others = [...new Set([...sameWords, ...otherWords])].filter((k) =>
        k !== w.order.key && !cleanedTogether.has(k) &&
        !this.#clearedKeys.has(k)
      );
      if (others.length > 0) {
        w.keptFor = others;
        this.d.log.info(
          `order ${w.order.orderNo}: ${w.path} is kept on disk: order(s) with key ${
            others.join(", ")
          } still name it`,
        );
        return true;
      }
    }
    try {
      if (w.file?.link) {
        // A symlinked image loses its link only (see Resolved in paths.ts).
        await Deno.remove(w.file.link);
      } else if (!(await this.#removeIfUnchanged(w))) {
        return false;
      }
    } catch (err) {
      if (!isNotFound(err)) {
        const reason = `cannot delete ${w.path}: ${
          fsProblem(err) ?? errorMessage(err)
        }`;
        this.summary.failed++;
        this.errors.push(`order ${w.order.orderNo}: ${reason}`);
        this.#say(
          { orderNo: w.order.orderNo, action: "failed", detail: reason },
          reason,
          "error",
        );
        return false;
      }
      w.alreadyGone = true; // another order of this batch named it too
    }
    if (w.action === "delete-unbacked") {
      this.d.log.warn(
        `order ${w.order.orderNo}: deleted ${w.path} without a backup (backup.required is false)`,
      );
    }
    return true;
  }

  /**
   * Deletes the image only if it is still the very file that was backed up.
   * It is first renamed aside (atomic), so an image the shop's application
   * puts at that path at the same moment is never the one deleted; the file
   * set aside is then checked (inode, size, modification time) and only then
   * unlinked. A file that changed since its backup goes back to its place,
   * or stays beside it when the path was taken again meanwhile.
   */
  async #removeIfUnchanged(w: Work): Promise<boolean> {
    const file = w.file!;
    const aside = join(
      dirname(w.path),
      `.${basename(w.path)}.image-agent-deleting-${randomSuffix()}`,
    );
    const { removed, keptAt: kept } = await this.d.io.run({
      kind: "remove",
      path: w.path,
      aside,
      size: file.size,
      mtimeMs: file.mtimeMs,
      ino: file.ino,
    });
    if (removed) return true;
    this.d.log.warn(
      `order ${w.order.orderNo}: ${w.path} changed after it was backed up; not deleted (it is at ${kept}), it will be backed up again next run`,
    );
    this.d.ledger.transaction(() =>
      this.d.ledger.invalidate(w.row!.id, "the image changed after its backup")
    );
    return false;
  }

  /**
   * A run killed between setting an image aside and unlinking it leaves
   * `.<name>.image-agent-deleting-*` beside the path. One whose bytes are the
   * recorded copy's is removed; any other goes back to its place (or beside
   * it, when the path is taken), the row is set back to be backed up again
   * and false is returned: the column must not be cleared.
   */
  async #settleSetAside(w: Work): Promise<boolean> {
    let dir: string;
    try {
      dir = await Deno.realPath(dirname(w.path));
    } catch {
      return true; // no folder: nothing was set aside there
    }
    const name = basename(w.path);
    const prefix = `.${name}.image-agent-deleting-`;
    const found: { path: string; isFile: boolean }[] = [];
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith(prefix)) {
        found.push({ path: join(dir, e.name), isFile: e.isFile });
      }
    }
    let allGone = true;
    for (const { path: aside, isFile } of found) {
      if (isFile && (await sha256File(aside)).sha256 === w.row!.sha256) {
        await Deno.remove(aside);
        continue;
      }
      allGone = false;
      const kept = putBack(aside, join(dir, name));
      this.d.log.warn(
        `order ${w.order.orderNo}: an interrupted run had set aside a version of ${w.path} that differs from its backup; it is back at ${kept} and will be backed up again`,
      );
    }
    if (!allGone) {
      this.d.ledger.transaction(() =>
        this.d.ledger.invalidate(
          w.row!.id,
          "the image changed after its backup",
        )
      );
    }
    return allGone;
  }

  /** Step 5: empties the image column of rows whose file is deleted. */
  async #clear(rows: BackupRow[]): Promise<void> {
    const changed = new Set(
      await this.d.shop.clearImages(
        rows.map((r) => ({ key: r.orderKey, image: r.image })),
      ),
    );
    for (const k of changed) this.#clearedKeys.add(k);
    this.d.ledger.transaction(() => {
      for (const r of rows) {
        this.d.ledger.markCleared(
          r.id,
          changed.has(r.orderKey)
            ? undefined
            : `the shop had already changed the image column; left as it is`,
        );
      }
    });
    for (const r of rows) {
      this.summary.cleaned++;
      this.#say(
        { orderNo: r.orderNo, action: "cleaned", size: r.size ?? undefined },
        `deleted the local image and cleared the image column (was "${r.image}")`,
      );
    }
    this.d.afterStep?.("cleared", rows.map((r) => r.orderKey));
  }
}

function subBatches(works: Work[]): Work[][] {
  const out: Work[][] = [];
  let cur: Work[] = [];
  let bytes = 0;
  for (const w of works) {
    if (cur.length > 0 && bytes + w.file!.size > SUB_BATCH_BYTES) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(w);
    bytes += w.file!.size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}
