/**
 * The chunked upload of one file: precreate, locateupload, superfile2 for
 * every part (several in flight), create.
 *
 * Each part is streamed from its file offset for each try (never a whole
 * part in memory, see part_body.ts), and the MD5 the server says it
 * received must be the one in the block list computed before. When it is
 * not, the part is hashed here again to tell a file that changed (the
 * upload fails, to be tried again) from a part damaged on the way (sent
 * again). The upload id and the parts already sent are saved through the
 * `ResumeSlot` after every part, so a killed run continues where it
 * stopped. A session the server calls expired is started again with
 * a new precreate. The caller makes the file's folder first; when precreate
 * or create still says it is missing, it is made again once. Parts go to
 * the hosts locateupload names, moving on from one that fails. A create
 * whose answer was lost is looked for before anything is sent again. What
 * this returns is not yet verified; the caller checks `create`'s answer and
 * looks the file up.
 */

import type { ResumeSlot } from "../storage.ts";
import type { IoPool } from "../../io/pool.ts";
import { StorageError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { BaiduApi, CreateAnswer } from "./api.ts";
import type { FileDigest } from "./digest.ts";
import { BaiduApiError, BaiduNetworkError } from "./errors.ts";
import { backoffMs } from "./http.ts";
import { parentOf } from "./paths.ts";
import { downloadStream } from "./download.ts";
import { createHash } from "../../fsutil.ts";

/** What the ledger keeps between runs for an upload in progress. */
export interface UploadState {
  v: 1;
  remotePath: string;
  size: number;
  mtimeMs: number;
  chunkSize: number;
  blockList: string[];
  uploadId: string;
  /**
   * Part index -> MD5 the server confirmed (for a part precreate said it
   * held, the block list's).
   */
  done: Record<string, string>;
  /** Set once `create` answered, so a crash before verifying is not re-sent. */
  created?: {
    fsId: string;
    path: string;
    size?: number;
    recovered?: boolean;
  };
}

export interface UploadOptions {
  localPath: string;
  remotePath: string;
  digest: FileDigest;
  concurrency: number;
  log: Logger;
  /** Hashes a part again when the server's MD5 differs. */
  io: IoPool;
  resume?: ResumeSlot;
  signal?: AbortSignal;
  onProgress?: (bytes: number) => void;
  /** New sessions allowed after the server expires one. */
  maxRestarts?: number;
  /**
   * Makes the file's folder again, after precreate or create said it is
   * missing; the call is then tried once more.
   */
  renewFolder?: () => Promise<void>;
  /** The file at `remotePath` is this backup's own earlier copy. */
  mayReplace?: boolean;
}

export type UploadOutcome =
  | { kind: "rapid"; path: string }
  | { kind: "created"; create: CreateAnswer };

/** Tries of one part whose MD5 came back wrong. */
const MD5_TRIES = 3;

export async function uploadFile(
  api: BaiduApi,
  o: UploadOptions,
): Promise<UploadOutcome> {
  const d = o.digest;
  let state = loadState(o);
  if (state?.created) {
    return { kind: "created", create: { ...state.created } };
  }
  let restarts = 0;
  let renewed = false;
  // A folder that vanished, or a file in the way of it, shows as "not
  // found" on precreate or create: the folder is made again, once.
  const inFolder = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      if (
        !(err instanceof BaiduApiError) || err.kind !== "not_found" ||
        renewed || !o.renewFolder
      ) throw err;
      renewed = true;
      o.log.warn(
        `Baidu Netdisk says the folder of "${o.remotePath}" is missing (error ${err.code}); making it again`,
      );
      await o.renewFolder();
      return await call();
    }
  };
  for (;;) {
    try {
      if (!state) {
        const pre = await inFolder(() =>
          api.precreate(commonForm(o, true), o.signal)
        );
        if (pre.returnType === 2) {
          o.resume?.clear();
          return { kind: "rapid", path: pre.path || o.remotePath };
        }
        if (!pre.uploadId) {
          throw new StorageError(
            `Baidu Netdisk did not open an upload session for "${o.remotePath}"`,
            "retry",
          );
        }
        state = {
          v: 1,
          remotePath: o.remotePath,
          size: d.size,
          mtimeMs: d.mtimeMs,
          chunkSize: d.chunkSize,
          blockList: d.blockList,
          uploadId: pre.uploadId,
          done: {},
        };
        // Parts the server says it holds already are not sent. Only the
        // first session is taken at its word: if create then finds a part
        // missing, the next session sends every part.
        const held = restarts === 0 ? heldParts(pre.needed, d) : [];
        let heldBytes = 0;
        for (const i of held) {
          state.done[i] = d.blockList[i];
          heldBytes += partLength(d, i);
        }
        o.resume?.save(state);
        if (held.length > 0) {
          o.log.info(
            `Baidu Netdisk already holds ${held.length} of ${d.blockList.length} parts of "${o.remotePath}"; sending the others`,
          );
          o.onProgress?.(heldBytes);
        }
      } else {
        o.log.info(
          `Resuming the upload of "${o.remotePath}": ${
            Object.keys(state.done).length
          } of ${d.blockList.length} parts already sent`,
        );
        let already = 0;
        for (const i of Object.keys(state.done)) already += partLength(d, +i);
        if (already > 0) o.onProgress?.(already);
      }
      await sendParts(api, o, state);
      const session = state;
      const create = await inFolder(() => commit(api, o, session));
      state.created = {
        fsId: create.fsId,
        path: create.path,
        size: create.size,
        recovered: create.recovered,
      };
      o.resume?.save(state);
      return { kind: "created", create };
    } catch (err) {
      if (!(err instanceof BaiduApiError) || err.kind !== "session") throw err;
      o.resume?.clear();
      state = undefined;
      if (++restarts > (o.maxRestarts ?? 3)) {
        throw new StorageError(
          `The upload session for "${o.remotePath}" kept expiring (${err.message}); it will be tried again next run`,
          "retry",
          { code: err.code },
        );
      }
      o.log.warn(
        `The upload session for "${o.remotePath}" expired (error ${err.code}); starting a new one`,
      );
    }
  }
}

/**
 * create, tried again on a broken connection or a server error like any
 * call. If such a try may have gone through, a later "no such session"
 * (31355, 31190) means the session was used up, most likely by that very
 * create: the file is then looked up before the whole upload starts again.
 */
async function commit(
  api: BaiduApi,
  o: UploadOptions,
  state: UploadState,
): Promise<CreateAnswer> {
  let unsure = false;
  for (let attempt = 1;; attempt++) {
    try {
      return await api.create(
        { ...commonForm(o, false), uploadid: state.uploadId },
        o.signal,
        ["transient"],
      );
    } catch (err) {
      if (isTransient(err) && attempt <= api.http.retries) {
        o.signal?.throwIfAborted();
        unsure = true;
        await api.http.clock.sleep(backoffMs(attempt, "transient"), o.signal);
        continue;
      }
      if (unsure && err instanceof BaiduApiError && err.kind === "session") {
        const found = await committedCopy(api, o);
        if (found) return found;
      }
      throw err;
    }
  }
}

/**
 * The file a create whose answer was lost left behind, or undefined (the
 * upload then starts again). A file listed at the path with this upload's
 * size and local mtime is most likely that create's, but could be an older
 * copy of another version saved within the same second; and Baidu's listed
 * MD5 cannot be trusted (4.5). So it is taken only once its bytes, read
 * back, hash to the MD5 of the local file: this is rare, and costs a
 * download instead of the upload again.
 */
async function committedCopy(
  api: BaiduApi,
  o: UploadOptions,
): Promise<CreateAnswer | undefined> {
  const { dir, name } = parentOf(o.remotePath);
  const mtime = Math.floor(o.digest.mtimeMs / 1000);
  const e = (await api.list(dir, o.signal)).find((x) =>
    !x.isDir && (x.path === o.remotePath || x.name === name)
  );
  if (!e || e.size !== o.digest.size || e.localMtime !== mtime) return;
  const path = e.path || o.remotePath;
  try {
    const md5 = createHash("md5");
    const stream = downloadStream(api, {
      remotePath: path,
      fsId: e.fsId,
      size: e.size,
    }, { signal: o.signal });
    for await (const piece of stream) md5.update(piece);
    if (md5.digest("hex") !== o.digest.md5) return;
  } catch (err) {
    o.signal?.throwIfAborted();
    if (err instanceof StorageError && err.failure === "stop") throw err;
    o.log.warn(
      `Cannot read back "${o.remotePath}" after its commit answer was lost (${
        err instanceof Error ? err.message : String(err)
      }); uploading it again`,
    );
    return;
  }
  o.log.info(
    `Baidu Netdisk's answer to the commit of "${o.remotePath}" was lost, but the file is there and reads back with the right MD5`,
  );
  return { fsId: e.fsId, path, size: e.size, recovered: true };
}

function loadState(o: UploadOptions): UploadState | undefined {
  const s = o.resume?.load() as UploadState | undefined;
  const d = o.digest;
  if (
    s && s.v === 1 && s.remotePath === o.remotePath && s.size === d.size &&
    s.mtimeMs === d.mtimeMs && s.chunkSize === d.chunkSize &&
    JSON.stringify(s.blockList) === JSON.stringify(d.blockList) &&
    typeof s.uploadId === "string" && s.done && typeof s.done === "object"
  ) {
    return s;
  }
  if (s !== undefined) o.resume?.clear();
  return undefined;
}

function commonForm(o: UploadOptions, pre: boolean): Record<string, string> {
  const d = o.digest;
  const mtime = String(Math.floor(d.mtimeMs / 1000));
  const form: Record<string, string> = {
    path: o.remotePath,
    size: String(d.size),
    isdir: "0",
    block_list: JSON.stringify(d.blockList),
    // Never over another file (the server gives the new one a free name,
    // which create answers), but over this backup's own earlier copy.
    rtype: o.mayReplace ? "3" : "1",
    local_mtime: mtime,
    local_ctime: mtime,
  };
  if (pre) {
    form.autoinit = "1";
    form["content-md5"] = d.md5;
    form["slice-md5"] = d.sliceMd5;
  }
  return form;
}

/**
 * The parts precreate's `block_list` (the indexes still needed) leaves
 * out. An empty or odd list (an index out of range) means every part.
 */
function heldParts(needed: number[], d: FileDigest): number[] {
  const n = d.blockList.length;
  if (needed.length === 0 || needed.some((i) => i < 0 || i >= n)) return [];
  const want = new Set(needed);
  return d.blockList.map((_, i) => i).filter((i) => !want.has(i));
}

function partLength(d: FileDigest, index: number): number {
  return Math.min(d.chunkSize, d.size - index * d.chunkSize);
}

async function sendParts(
  api: BaiduApi,
  o: UploadOptions,
  state: UploadState,
): Promise<void> {
  const d = o.digest;
  const todo = d.blockList.map((_, i) => i).filter((i) => !(i in state.done));
  if (todo.length === 0) return;
  const hosts = new UploadHosts(
    await api.uploadHosts(o.remotePath, state.uploadId, o.signal),
  );
  const stop = new AbortController();
  const signal = o.signal
    ? AbortSignal.any([o.signal, stop.signal])
    : stop.signal;
  let failure: unknown;
  const worker = async () => {
    while (todo.length > 0 && failure === undefined) {
      const index = todo.shift()!;
      try {
        const md5 = await sendPart(api, o, state, hosts, index, signal);
        state.done[index] = md5;
        o.resume?.save(state);
        o.onProgress?.(partLength(d, index));
      } catch (err) {
        if (failure === undefined) failure = err;
        stop.abort(err);
      }
    }
  };
  const n = Math.max(1, Math.min(o.concurrency, todo.length));
  await Promise.all(Array.from({ length: n }, worker));
  if (failure !== undefined) {
    o.signal?.throwIfAborted();
    throw failure;
  }
}

/**
 * The hosts a session's parts may go to, in the order locateupload gave
 * them. A host that fails a part (broken connection, timeout, server
 * error) is left for the next one, for every part at once; after the last
 * comes the first again.
 *
 * TODO: ask locateupload again once every host has failed a part, instead
 * of going round the same list, if long uploads show Baidu moving them.
 */
class UploadHosts {
  #hosts: string[];
  #at = 0;
  constructor(hosts: string[]) {
    this.#hosts = hosts;
  }
  get current(): string {
    return this.#hosts[this.#at];
  }
  /** Moves on from `host`, unless another part already did. */
  failed(host: string): void {
    if (this.#hosts[this.#at] === host) {
      this.#at = (this.#at + 1) % this.#hosts.length;
    }
  }
  get size(): number {
    return this.#hosts.length;
  }
  indexOf(host: string): number {
    return this.#hosts.indexOf(host);
  }
}

function isTransient(err: unknown): boolean {
  return err instanceof BaiduNetworkError ||
    (err instanceof BaiduApiError && err.kind === "transient");
}

/**
 * One try of a part as far as the network goes: sent to the current host,
 * and on a transient failure to the next, with backoff, as many times as
 * the API layer would retry on one host.
 */
async function sendToHosts(
  api: BaiduApi,
  o: UploadOptions,
  state: UploadState,
  hosts: UploadHosts,
  index: number,
  body: Parameters<BaiduApi["uploadPart"]>[2],
  boundary: string,
  signal: AbortSignal,
): Promise<string> {
  for (let attempt = 1;; attempt++) {
    const host = hosts.current;
    try {
      return await api.uploadPart(
        host,
        { path: o.remotePath, uploadid: state.uploadId, partseq: index },
        body,
        boundary,
        signal,
        ["transient"],
      );
    } catch (err) {
      if (!isTransient(err) || attempt > api.http.retries) throw err;
      signal.throwIfAborted();
      hosts.failed(host);
      if (hosts.size > 1) {
        o.log.debug(
          `baidu part ${index + 1}: upload host ${
            hosts.indexOf(host) + 1
          } of ${hosts.size} failed; trying host ${
            hosts.indexOf(hosts.current) + 1
          }`,
        );
      }
      await api.http.clock.sleep(backoffMs(attempt, "transient"), signal);
    }
  }
}

async function sendPart(
  api: BaiduApi,
  o: UploadOptions,
  state: UploadState,
  hosts: UploadHosts,
  index: number,
  signal: AbortSignal,
): Promise<string> {
  const d = o.digest;
  const length = partLength(d, index);
  const boundary = `image-agent-${crypto.randomUUID()}`;
  const head = new TextEncoder().encode(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; ` +
      `filename="part${index}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = new TextEncoder().encode(`\r\n--${boundary}--\r\n`);
  const offset = index * d.chunkSize;
  for (let attempt = 1;; attempt++) {
    const md5 = await sendToHosts(
      api,
      o,
      state,
      hosts,
      index,
      { head, tail, path: o.localPath, offset, length },
      boundary,
      signal,
    );
    if (md5.toLowerCase() === d.blockList[index]) return d.blockList[index];
    const local = await o.io.run({
      kind: "hash",
      path: o.localPath,
      offset,
      length,
      md5: true,
    });
    if (local.md5 !== d.blockList[index]) {
      throw new StorageError(
        `The image "${o.localPath}" changed while it was being uploaded; it will be tried again`,
        "retry",
      );
    }
    if (attempt >= MD5_TRIES) {
      throw new StorageError(
        `Baidu Netdisk received part ${
          index + 1
        } of "${o.remotePath}" damaged ${MD5_TRIES} times (MD5 differs); it will be tried again`,
        "retry",
      );
    }
    o.log.warn(
      `Part ${
        index + 1
      } of "${o.remotePath}" arrived damaged (MD5 differs); sending it again`,
    );
  }
}
