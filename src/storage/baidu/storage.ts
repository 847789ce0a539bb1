/**
 * Baidu Netdisk as a backup target. Copies go to
 * `<folder>/<order folder>/<file name>` under the app's `/apps/<app>/`;
 * the folders are made before the first file goes into them (folders.ts).
 *
 * `put` resolves only after `create` confirmed the size of exactly the
 * block list that was sent (each part's MD5 checked against what the server
 * received) and the file was then found, with that size, through filemetas
 * or the folder listing. Every failure leaves as a `StorageError` whose
 * `failure` tells the engine what to do, with no token or address in it.
 */

import { basename } from "node:path";
import { StorageError } from "../../errors.ts";
import { formatBytes, type Logger } from "../../log.ts";
import type { Clock } from "../../clock.ts";
import { IoPool } from "../../io/pool.ts";
import {
  type Admission,
  orderFolderName,
  type PutOptions,
  type PutResult,
  type RemoteStat,
  type Storage,
  type TransferOptions,
  type UploadSource,
} from "../storage.ts";
import { type Account, BaiduApi, type BaiduEndpoints } from "./api.ts";
import {
  chunkSizeFor,
  digestFile,
  type FileDigest,
  MAX_PARTS,
  maxFileSize,
  vipName,
} from "./digest.ts";
import { downloadStream } from "./download.ts";
import { BaiduFolders } from "./folders.ts";
import { BaiduApiError, toStorageError } from "./errors.ts";
import { BaiduHttp } from "./http.ts";
import type { TokenSource } from "./tokens.ts";
import { uploadFile } from "./upload.ts";
import { nameProblem, parentOf, pathFits } from "./paths.ts";

export interface BaiduStorageOptions {
  folder: string;
  endpoints: BaiduEndpoints;
  tokens: TokenSource;
  fetch: typeof fetch;
  clock: Clock;
  log: Logger;
  /** Parts in flight per file. */
  concurrency?: number;
  /** Preferred chunk size for VIP accounts, in MiB (0: automatic). */
  chunkSizeMiB?: number;
  /** Exact chunk size in bytes, ignoring member rules (tests, benchmarks). */
  chunkSizeBytes?: number;
  retries?: number;
  /** Per API request, and for a download's answer to start (120 s). */
  timeoutMs?: number;
  /** A download that delivers no byte for this long is resumed (60 s). */
  readIdleMs?: number;
  /**
   * Worker threads for the hashes. Without one the target starts two of
   * its own, which `close()` stops.
   */
  io?: IoPool;
}

const DELETE_BATCH = 100;

export class BaiduStorage implements Storage {
  readonly name = "baidu";
  readonly folder: string;
  readonly api: BaiduApi;
  #o: BaiduStorageOptions;
  #account?: Promise<Account>;
  #io: IoPool;
  #ownIo: boolean;
  #folders: BaiduFolders;

  constructor(options: BaiduStorageOptions) {
    this.#o = options;
    this.#ownIo = !options.io;
    this.#io = options.io ?? new IoPool({ workers: 2 });
    this.folder = options.folder.replace(/\/+$/, "");
    const http = new BaiduHttp({
      fetch: options.fetch,
      clock: options.clock,
      log: options.log,
      tokens: options.tokens,
      retries: options.retries,
      timeoutMs: options.timeoutMs,
    });
    this.api = new BaiduApi(http, options.endpoints);
    this.#folders = new BaiduFolders(this.api);
  }

  describe(): string {
    return `Baidu Netdisk ${this.folder}`;
  }

  /** Stops the hash workers it started itself. */
  async close(): Promise<void> {
    if (this.#ownIo) await this.#io.close();
  }

  /** Read once per run: a membership can lapse between runs. */
  account(signal?: AbortSignal): Promise<Account> {
    this.#account ??= this.api.account(signal).catch((err) => {
      this.#account = undefined;
      throw err;
    });
    return this.#account;
  }

  remotePathOf(source: UploadSource): string {
    return `${this.folder}/${orderFolderName(source.orderNo)}/${
      basename(source.fileName).normalize("NFC")
    }`;
  }

  async admit(
    sources: UploadSource[],
    signal?: AbortSignal,
  ): Promise<Admission> {
    return await this.#guard("the space check", async () => {
      const { vipType } = await this.account(signal);
      const limit = maxFileSize(vipType);
      const admission: Admission = { rejected: new Map() };
      let need = 0;
      for (const s of sources) {
        const chunk = this.#chunkSize(s.size, vipType);
        if (s.size > limit) {
          admission.rejected.set(
            s.path,
            `${formatBytes(s.size)} is over Baidu's ${
              formatBytes(limit)
            } limit for one file (${vipName(vipType)} account)`,
          );
        } else if (Math.ceil(s.size / chunk) > MAX_PARTS) {
          admission.rejected.set(
            s.path,
            `${formatBytes(s.size)} needs more than ${MAX_PARTS} parts of ${
              formatBytes(chunk)
            }`,
          );
        } else if (s.size === 0) {
          admission.rejected.set(
            s.path,
            "Baidu Netdisk does not take empty files",
          );
        } else {
          need += s.size;
        }
      }
      if (need > 0) {
        const quota = await this.api.quota(signal);
        if (need > quota.free) admission.shortBy = need - quota.free;
      }
      return admission;
    });
  }

  #chunkSize(size: number, vipType: number): number {
    return this.#o.chunkSizeBytes ??
      chunkSizeFor(size, vipType, this.#o.chunkSizeMiB ?? 0);
  }

  async put(
    source: UploadSource,
    options: PutOptions = {},
  ): Promise<PutResult> {
    const remotePath = this.remotePathOf(source);
    const problem = pathFits(remotePath)
      ? nameProblem(basename(remotePath))
      : "the full path is longer than 1000 characters";
    if (problem) {
      throw new StorageError(
        `Baidu Netdisk cannot store "${basename(remotePath)}": ${problem}`,
        "skip",
      );
    }
    return await this.#guard(`the upload of "${remotePath}"`, async () => {
      if (source.size === 0) {
        // TODO: keep empty images in the ledger without a remote copy, once
        // the engine can record a copy-less backup; until then they skip.
        throw new StorageError(
          `"${source.fileName}" is empty; Baidu Netdisk does not take empty files`,
          "skip",
        );
      }
      const { vipType } = await this.account(options.signal);
      await this.#folders.ensure(parentOf(remotePath).dir, options.signal);
      const digest = await digestFile(
        source.path,
        this.#chunkSize(source.size, vipType),
        this.#io,
      );
      // The SHA-256 the ledger keeps is not needed before the parts go, so
      // it is computed meanwhile, on a worker of its own.
      const sha256 = this.#io.run({
        kind: "hash",
        path: source.path,
        offset: 0,
        length: -1,
        sha256: true,
      });
      sha256.catch(() => {}); // awaited below; an upload error comes first
      const outcome = await this.#send(source, remotePath, digest, options);
      const hashed = await sha256;
      const after = await Deno.stat(source.path);
      if (
        hashed.size !== digest.size || after.size !== digest.size ||
        (after.mtime?.getTime() ?? 0) !== digest.mtimeMs
      ) {
        throw new StorageError(
          `The image "${source.path}" changed while it was being uploaded; it will be uploaded again`,
          "retry",
        );
      }
      return { ...outcome, sha256: hashed.sha256! };
    });
  }

  /** Uploads, then checks what the server confirmed and finds the file. */
  async #send(
    source: UploadSource,
    remotePath: string,
    digest: FileDigest,
    options: PutOptions,
  ): Promise<Omit<PutResult, "sha256">> {
    const outcome = await uploadFile(this.api, {
      localPath: source.path,
      remotePath,
      digest,
      concurrency: this.#o.concurrency ?? 3,
      log: this.#o.log,
      io: this.#io,
      resume: options.resume,
      signal: options.signal,
      onProgress: options.onProgress,
      mayReplace: options.replace === remotePath,
      renewFolder: () =>
        this.#folders.renew(parentOf(remotePath).dir, options.signal),
    }).catch((err) => this.#quotaStop(err, digest.size, remotePath));
    let found: RemoteStat | null;
    let finalPath = remotePath;
    if (outcome.kind === "created") {
      const c = outcome.create;
      finalPath = c.path || remotePath;
      // An answer without a size is not a refusal: the lookup below must
      // then find the file with the right size.
      if (
        (c.size !== undefined && c.size !== digest.size) ||
        (c.blockList &&
          JSON.stringify(c.blockList) !== JSON.stringify(digest.blockList))
      ) {
        options.resume?.clear();
        throw new StorageError(
          `Baidu Netdisk confirmed "${remotePath}" with ${c.size} bytes, not the ${digest.size} sent; it will be uploaded again`,
          "retry",
        );
      }
      found = await this.#find(finalPath, c.fsId, options.signal);
    } else {
      finalPath = outcome.path;
      found = await this.stat(finalPath, options.signal);
    }
    if (!found || found.size !== digest.size) {
      options.resume?.clear();
      throw new StorageError(
        `Baidu Netdisk accepted "${remotePath}" but the file is ${
          found ? `${found.size} bytes instead of ${digest.size}` : "not there"
        }; it will be uploaded again`,
        "retry",
      );
    }
    options.resume?.clear();
    if (outcome.kind === "rapid") options.onProgress?.(digest.size);
    return {
      remotePath: finalPath,
      size: digest.size,
      md5: digest.md5,
      verifiedBy: outcome.kind === "rapid"
        ? "baidu rapid upload, size listed"
        : outcome.create.recovered
        ? "baidu create (answer lost), MD5 of the copy read back"
        : "baidu create block list and size, size listed",
      reused: outcome.kind === "rapid",
    };
  }

  async #find(
    path: string,
    fsId: string,
    signal?: AbortSignal,
  ): Promise<RemoteStat | null> {
    if (/^\d+$/.test(fsId)) {
      const metas = await this.api.filemetas([fsId], false, signal);
      const m = metas.find((e) => e.path === path || e.fsId === fsId);
      if (m) return { remotePath: m.path || path, size: m.size };
    }
    return await this.stat(path, signal);
  }

  async #quotaStop(err: unknown, size: number, path: string): Promise<never> {
    if (err instanceof BaiduApiError && err.kind === "quota") {
      const free = await this.api.quota().then((q) => q.free, () => undefined);
      throw new StorageError(
        `Baidu Netdisk is full: "${path}" needs ${formatBytes(size)}${
          free === undefined ? "" : `, ${formatBytes(free)} free`
        }; the run stops and nothing more is deleted`,
        "stop",
        {
          code: err.code,
          hint:
            "free space on Baidu Netdisk (or raise the plan), then run again",
        },
      );
    }
    throw err;
  }

  async stat(
    remotePath: string,
    signal?: AbortSignal,
  ): Promise<RemoteStat | null> {
    return await this.#guard(`the lookup of "${remotePath}"`, async () => {
      const { dir, name } = parentOf(remotePath);
      const list = await this.api.list(dir, signal);
      const e = list.find((x) =>
        !x.isDir && (x.name === name || x.path === remotePath)
      );
      return e ? { remotePath, size: e.size } : null;
    });
  }

  async open(
    remotePath: string,
    options: TransferOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    return await this.#guard(`the download of "${remotePath}"`, async () => {
      const { dir, name } = parentOf(remotePath);
      const list = await this.api.list(dir, options.signal);
      const e = list.find((x) =>
        !x.isDir && (x.name === name || x.path === remotePath)
      );
      if (!e) {
        throw new StorageError(
          `The backup copy "${remotePath}" is not on Baidu Netdisk`,
          "retry",
        );
      }
      return downloadStream(
        this.api,
        { remotePath, fsId: e.fsId, size: e.size },
        { ...options, readIdleMs: this.#o.readIdleMs },
      );
    });
  }

  // TODO: remove an order folder once its last copy is pruned; it needs a
  // listing per folder, worth it once prune runs report empty folders piling
  // up (docs/baidu.md lists this limit).
  async remove(remotePaths: string[], signal?: AbortSignal): Promise<void> {
    await this.#guard("the delete of old copies", async () => {
      for (let i = 0; i < remotePaths.length; i += DELETE_BATCH) {
        const batch = remotePaths.slice(i, i + DELETE_BATCH);
        const result = await this.api.delete(batch, signal);
        const failed: [string, string, number?][] = [];
        for (const [path, errno] of result) {
          if (errno !== 0 && errno !== -9) {
            failed.push([path, `error ${errno}`, errno]);
          }
        }
        // A path the answer does not name counts as deleted only once the
        // listing no longer shows it.
        const unnamed = batch.filter((p) => !result.has(p));
        for (const path of await this.#stillListed(unnamed, signal)) {
          failed.push([path, "still listed after the delete"]);
        }
        if (failed.length > 0) {
          throw new StorageError(
            `Baidu Netdisk did not delete ${failed.length} of ${batch.length} copies (first: "${
              failed[0][0]
            }", ${failed[0][1]})`,
            "retry",
            { code: failed[0][2] },
          );
        }
      }
    });
  }

  /** Those of `paths` their folder's listing still shows. */
  async #stillListed(
    paths: string[],
    signal?: AbortSignal,
  ): Promise<string[]> {
    const byDir = new Map<string, string[]>();
    for (const p of paths) {
      const { dir } = parentOf(p);
      byDir.set(dir, [...(byDir.get(dir) ?? []), p]);
    }
    const left: string[] = [];
    for (const [dir, inDir] of byDir) {
      const listed = new Set<string>();
      for (const e of await this.api.list(dir, signal)) {
        listed.add(e.path).add(`${dir}/${e.name}`);
      }
      left.push(...inDir.filter((p) => listed.has(p)));
    }
    return left;
  }

  /** Turns API and network errors into the engine's `StorageError`s. */
  async #guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toStorageError(err, what);
    }
  }
}

BaiduStorage satisfies new (options: BaiduStorageOptions) => Storage;
