/**
 * Backup targets behind one interface. The engine never knows whether a copy
 * sits in a local folder, on a NAS or on Baidu Netdisk.
 *
 * The contract, which `tests/storage_contract.ts` checks for every target:
 * - `put` resolves only when the copy is complete *and verified* by the
 *   target's own means (local: SHA-256 of the copy read back; Baidu: the
 *   block list confirmed by `create`, then the file found with its size).
 *   It returns the SHA-256 of the bytes it read from the source, computed in
 *   the same pass. If it throws, nothing may be deleted locally.
 * - `put` is idempotent: a copy already present with the same content is
 *   recognised and not sent again.
 * - `put` never replaces a file it was not told it may (`replace`): two
 *   orders whose copies would get the same name both keep their own.
 * - `put` may keep resume state in `resume` (kept in the ledger); a killed
 *   run continues from there.
 * - Failures are `StorageError`s whose `failure` tells the engine what to do
 *   (`retry`, `skip`, `stop`); anything else is treated as `retry`.
 * - Nothing secret appears in an error message.
 */

export interface UploadSource {
  /** Order number, used as the folder of the copy. */
  orderNo: string;
  /** Absolute path of the local file. */
  path: string;
  /** Base name the copy gets. */
  fileName: string;
  size: number;
}

/** Per-upload state a target may keep across runs (JSON-serialisable). */
export interface ResumeSlot {
  load(): unknown | undefined;
  save(state: unknown): void;
  clear(): void;
}

export interface TransferOptions {
  signal?: AbortSignal;
  /** Called with the number of new bytes moved, for a progress line. */
  onProgress?: (bytes: number) => void;
}

export interface PutOptions extends TransferOptions {
  resume?: ResumeSlot;
  /**
   * The remote path of this backup's own earlier copy (of a version of the
   * image that has changed since), which the new copy may replace. Any
   * other file already at the wanted path is never replaced: the copy takes
   * another name, and `remotePath` says which.
   */
  replace?: string;
}

export interface PutResult {
  /** Where the copy lives, in the target's own terms; give it back to `open`. */
  remotePath: string;
  size: number;
  /** SHA-256 (hex) of the bytes read from the source. */
  sha256: string;
  /** MD5 (hex) of the whole file, when the target computed it. */
  md5?: string;
  /** How the copy was verified, for the ledger: "sha256 of copy", ... */
  verifiedBy: string;
  /** True when the copy already existed and no byte was sent. */
  reused: boolean;
}

export interface RemoteStat {
  remotePath: string;
  size: number;
}

/** Outcome of asking the target whether a run's files fit. */
export interface Admission {
  /** Reason per source path for files that can never go (too large). */
  rejected: Map<string, string>;
  /** Set when the whole run cannot fit: how many bytes are missing. */
  shortBy?: number;
}

export interface Storage {
  /** "local", "baidu". */
  readonly name: string;
  /** Where copies go, for messages: "/mnt/nas/hd-backup", "Baidu Netdisk /apps/x/hd". */
  describe(): string;
  /** Checks limits and free space before any byte is sent. */
  admit(sources: UploadSource[], signal?: AbortSignal): Promise<Admission>;
  put(source: UploadSource, options?: PutOptions): Promise<PutResult>;
  /** The copy's size, or null when it is not there. */
  stat(remotePath: string, signal?: AbortSignal): Promise<RemoteStat | null>;
  /**
   * The copy's bytes. A remote target resumes a broken download itself
   * (with `Range`), so the stream either delivers every byte or errors.
   */
  open(
    remotePath: string,
    options?: TransferOptions,
  ): Promise<ReadableStream<Uint8Array>>;
  /** Deletes copies; a copy already gone counts as removed. */
  remove(remotePaths: string[], signal?: AbortSignal): Promise<void>;
  close?(): Promise<void>;
}

// deno-lint-ignore no-control-regex -- control characters are what it removes
const UNSAFE = /[\\/:*?"<>|\x00-\x1f\x7f]/g;

/** One path segment made from an order number: no separators, no dots-only. */
export function orderFolderName(orderNo: string): string {
  let s = orderNo.normalize("NFC").replace(UNSAFE, "_").trim();
  if (s === "" || /^\.+$/.test(s)) s = "_" + s;
  return s.slice(0, 200);
}
