/**
 * A local or NAS folder as the backup target. Copies go to
 * `<dir>/<order number>/<file name>`.
 *
 * A copy is written to a temp file beside its final name while the source is
 * hashed (one read of the source), flushed to disk, read back and hashed
 * again; only when the two SHA-256 values match is it renamed into place and
 * `put` resolves. A copy already present with the same content is reused.
 */

import { basename, dirname, relative, resolve, sep } from "node:path";
import { StorageError } from "../errors.ts";
import { freeBytes, fsProblem, isNotFound, randomSuffix } from "../fsutil.ts";
import { CopyCheckError, type CopyDone, isSourceError } from "../io/jobs.ts";
import { IoPool } from "../io/pool.ts";
import {
  type Admission,
  orderFolderName,
  type PutOptions,
  type PutResult,
  type RemoteStat,
  type Storage,
  type TransferOptions,
  type UploadSource,
} from "./storage.ts";

export interface LocalStorageOptions {
  /**
   * The worker threads copies run on. Without one the target starts four
   * of its own, which `close()` stops.
   */
  io?: IoPool;
}

export class LocalStorage implements Storage {
  readonly name = "local";
  readonly dir: string;
  #pool: IoPool;
  #ownPool: boolean;
  /** Names this process's temp files, so a stale one is told from ours. */
  #runToken = randomSuffix();

  constructor(dir: string, options: LocalStorageOptions = {}) {
    this.dir = resolve(dir);
    this.#ownPool = !options.io;
    this.#pool = options.io ?? new IoPool({ workers: 4 });
  }

  describe(): string {
    return this.dir;
  }

  #abs(remotePath: string): string {
    const p = resolve(this.dir, remotePath);
    const rel = relative(this.dir, p);
    if (rel === "" || rel.startsWith("..") || rel.startsWith(sep)) {
      throw new StorageError(
        `Backup path "${remotePath}" points outside the backup folder`,
        "skip",
      );
    }
    return p;
  }

  admit(sources: UploadSource[]): Promise<Admission> {
    const need = sources.reduce((a, s) => a + s.size, 0);
    const free = freeBytes(this.dir);
    const admission: Admission = { rejected: new Map() };
    if (free !== undefined && need > free) admission.shortBy = need - free;
    return Promise.resolve(admission);
  }

  async put(
    source: UploadSource,
    options: PutOptions = {},
  ): Promise<PutResult> {
    const remotePath = `${orderFolderName(source.orderNo)}/${
      basename(source.fileName)
    }`;
    const dest = this.#abs(remotePath);
    options.signal?.throwIfAborted();
    let done: CopyDone;
    try {
      done = await this.#pool.run(
        {
          kind: "copy",
          source: source.path,
          dest,
          runToken: this.#runToken,
          replace: options.replace ? this.#abs(options.replace) : undefined,
        },
        options.onProgress,
      );
    } catch (err) {
      throw this.#storageError(err);
    }
    return {
      remotePath: `${dirname(remotePath)}/${basename(done.dest)}`,
      size: done.size,
      sha256: done.sha256,
      verifiedBy: done.reused ? "sha256 of existing copy" : "sha256 of copy",
      reused: done.reused,
    };
  }

  /** Stops the copy workers it started itself. */
  async close(): Promise<void> {
    if (this.#ownPool) await this.#pool.close();
  }

  #storageError(err: unknown): unknown {
    if (err instanceof CopyCheckError) {
      return new StorageError(
        err.check === "changed"
          ? `The image changed while it was being copied; it will be tried again`
          : `The copy in ${this.dir} does not match the image (SHA-256 differs); it will be tried again`,
        "retry",
      );
    }
    const problem = isSourceError(err) ? undefined : fsProblem(err);
    if (!problem) return err;
    return new StorageError(
      `Cannot write to the backup folder ${this.dir}: ${problem}`,
      problem === "the disk is full" ||
        problem === "the file system is read-only" ||
        problem === "the disk quota is exceeded"
        ? "stop"
        : "retry",
      { cause: err },
    );
  }

  async stat(remotePath: string): Promise<RemoteStat | null> {
    const s = await statOrNull(this.#abs(remotePath));
    return s && s.isFile ? { remotePath, size: s.size } : null;
  }

  async open(
    remotePath: string,
    _options: TransferOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    try {
      const f = await Deno.open(this.#abs(remotePath), { read: true });
      return f.readable;
    } catch (err) {
      if (isNotFound(err)) {
        throw new StorageError(
          `The backup copy "${remotePath}" is not in ${this.dir}`,
          "retry",
          { cause: err },
        );
      }
      throw err;
    }
  }

  async remove(remotePaths: string[]): Promise<void> {
    for (const p of remotePaths) {
      const abs = this.#abs(p);
      await Deno.remove(abs).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
      await Deno.remove(dirname(abs)).catch(() => {}); // only when empty
    }
  }
}

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

LocalStorage satisfies new (
  dir: string,
  options?: LocalStorageOptions,
) => Storage;
