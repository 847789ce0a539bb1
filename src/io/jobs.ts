/**
 * The file work that runs on the I/O workers (see pool.ts): copying an image
 * with its hash and read-back check, and hashing a file or a range of it.
 *
 * Everything here is synchronous on purpose. On a worker thread a blocking
 * read, write or fsync stalls only that worker, and each call is a plain
 * system call instead of a round trip from the JavaScript thread to Deno's
 * I/O threads and back, which dominated the copy of small images. The same
 * functions run inline (on the calling thread) when no worker can be
 * started, so they are also what the tests call directly.
 */

import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { syncDir } from "./sync_dir.ts";

/** Size of each read. */
export const JOB_READ_BYTES = 1024 * 1024;

/**
 * Copies an image beside `dest` and puts it in place once verified, never
 * over another file: when `dest` holds different bytes (another order
 * whose folder name came out the same, an earlier version of this image,
 * a copy the ledger no longer knows), the copy takes the next free name,
 * `name~2.ext`, `name~3.ext`, ...
 */
export interface CopyJob {
  kind: "copy";
  source: string;
  /** Wanted path of the copy. */
  dest: string;
  /**
   * Names this run's temp files: `.<name>.partial-<runToken>-<suffix>`
   * beside `dest`. Temp files of other tokens are left by killed runs and
   * removed; those of this run may be another copy in flight.
   */
  runToken: string;
  /** A file at `dest` this copy may replace (its own earlier version). */
  replace?: string;
}

export interface CopyDone {
  size: number;
  /** SHA-256 of the bytes read from the source. */
  sha256: string;
  /** Where the copy is: `dest` or a free name beside it. */
  dest: string;
  /** True when an identical copy was already there. */
  reused: boolean;
}

/** Names tried beside a taken `dest` before the copy gives up. */
const MAX_NAME_TRIES = 100;

/**
 * Hashes `length` bytes of a file from `offset` (all of it when `length`
 * is -1): any of SHA-256, MD5, the MD5 of the first `sliceBytes`, and the
 * MD5 of every `blockBytes` block (the range must start on a block).
 */
export interface HashJob {
  kind: "hash";
  path: string;
  offset: number;
  length: number;
  sha256?: boolean;
  md5?: boolean;
  sliceBytes?: number;
  blockBytes?: number;
}

export interface HashDone {
  /** Bytes hashed. */
  size: number;
  sha256?: string;
  md5?: string;
  sliceMd5?: string;
  blocks?: string[];
}

/**
 * Deletes an image only if it is still the file that was backed up: renames
 * it aside (atomic), checks the file set aside against the identity taken
 * when the run planned it, and only then unlinks it. Anything else found
 * there (a new version, a folder) goes back to its place, or beside it when
 * the place was taken again meanwhile.
 */
export interface RemoveJob {
  kind: "remove";
  path: string;
  aside: string;
  size: number;
  mtimeMs: number;
  /** Inode, where the platform has one. */
  ino: number | null;
}

export interface RemoveDone {
  /** False when the file had changed. */
  removed: boolean;
  /** Where what was found is now, when it was not removed. */
  keptAt?: string;
}

/**
 * The identity of the file each path names, symlinks followed: the same
 * string for two paths that reach one file, null for a path that names
 * nothing (or cannot be read).
 */
export interface IdentifyJob {
  kind: "identify";
  paths: string[];
}

export interface IdentifyDone {
  ids: (string | null)[];
}

export type Job = CopyJob | HashJob | RemoveJob | IdentifyJob;
export type JobResult<J extends Job> = J extends CopyJob ? CopyDone
  : J extends RemoveJob ? RemoveDone
  : J extends IdentifyJob ? IdentifyDone
  : HashDone;

/** Why a copy was refused; the caller words it for the operator. */
export class CopyCheckError extends Error {
  readonly check: "changed" | "mismatch";
  constructor(check: "changed" | "mismatch", message: string) {
    super(message);
    this.name = "CopyCheckError";
    this.check = check;
  }
}

/** A reusable read buffer per thread: allocating one per file cost more than the copy. */
let readBuffer: Uint8Array | undefined;
function buffer(): Uint8Array {
  return readBuffer ??= new Uint8Array(JOB_READ_BYTES);
}

/** `onProgress` gets new bytes moved, for a progress line. */
export function runJob(
  job: Job,
  onProgress?: (bytes: number) => void,
): CopyDone | HashDone | RemoveDone | IdentifyDone {
  switch (job.kind) {
    case "identify":
      return {
        ids: job.paths.map((p) => {
          try {
            return fileIdentity(p, Deno.statSync(p));
          } catch {
            return null;
          }
        }),
      };
    case "copy":
      return copyVerified(job, onProgress);
    case "hash":
      return hashRange(job);
    case "remove":
      return removeIfSame(job);
  }
}

export function removeIfSame(job: RemoveJob): RemoveDone {
  Deno.renameSync(job.path, job.aside);
  const now = Deno.lstatSync(job.aside);
  const same = now.isFile && now.size === job.size &&
    (now.mtime?.getTime() ?? 0) === job.mtimeMs &&
    (job.ino === null || now.ino === job.ino);
  if (!same) return { removed: false, keptAt: putBack(job.aside, job.path) };
  Deno.removeSync(job.aside);
  return { removed: true };
}

/**
 * Moves what was set aside back to `path` without replacing anything put
 * there meanwhile (a hard link fails when the name is taken); a folder, or
 * a file system without hard links, is renamed back when the place is
 * free. When it is not, the thing stays beside it as
 * `<name>.image-agent-kept-<suffix>`. Returns where it is.
 */
export function putBack(aside: string, path: string): string {
  try {
    Deno.linkSync(aside, path);
    Deno.removeSync(aside);
    return path;
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists) && !lstatOrNull(path)) {
      Deno.renameSync(aside, path);
      return path;
    }
  }
  const kept = join(
    dirname(path),
    `${basename(path)}.image-agent-kept-${crypto.randomUUID().slice(0, 8)}`,
  );
  Deno.renameSync(aside, kept);
  return kept;
}

function lstatOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/**
 * Marks an error that happened on the image itself (reading the source),
 * not on the copy, so the caller does not blame the backup folder.
 */
function onSource<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err && typeof err === "object") {
      (err as { side?: string }).side = "source";
    }
    throw err;
  }
}

/** True when `err` came from reading the image, not from writing the copy. */
export function isSourceError(err: unknown): boolean {
  return (err as { side?: string } | null)?.side === "source";
}

export function copyVerified(
  job: CopyJob,
  onProgress?: (bytes: number) => void,
): CopyDone {
  const before = onSource(() => Deno.statSync(job.source));
  const existing = statOrNull(job.dest);
  if (existing?.isFile && existing.size === before.size) {
    const a = onSource(() => sha256Of(job.source));
    if (a.size === before.size && a.sha256 === sha256Of(job.dest).sha256) {
      onProgress?.(a.size);
      return { size: a.size, sha256: a.sha256, dest: job.dest, reused: true };
    }
  }

  const folder = dirname(job.dest);
  const created = makeFolder(folder);
  // A run killed mid-copy left its temp file here; copies run under the run
  // lock, so a temp of another run is nobody's now.
  const prefix = `.${basename(job.dest)}.partial-`;
  if (!created) removeStaleTemps(folder, prefix, `${prefix}${job.runToken}-`);
  const temp = join(
    folder,
    `${prefix}${job.runToken}-${crypto.randomUUID().slice(0, 8)}`,
  );
  let size = 0;
  const hash = createHash("sha256");
  try {
    const out = Deno.openSync(temp, {
      write: true,
      createNew: true,
      mode: 0o600,
    });
    try {
      const input = onSource(() => Deno.openSync(job.source, { read: true }));
      try {
        const buf = buffer();
        for (;;) {
          const n = onSource(() => input.readSync(buf));
          if (n === null) break;
          const piece = buf.subarray(0, n);
          hash.update(piece);
          writeAllSync(out, piece);
          size += n;
          onProgress?.(n);
        }
      } finally {
        input.close();
      }
      out.syncSync();
    } finally {
      out.close();
    }
    const sha256 = hash.digest("hex");
    const after = onSource(() => Deno.statSync(job.source));
    if (
      size !== after.size || before.mtime?.getTime() !== after.mtime?.getTime()
    ) {
      throw new CopyCheckError(
        "changed",
        "The image changed while it was being copied",
      );
    }
    const check = sha256Of(temp);
    if (check.sha256 !== sha256 || check.size !== size) {
      throw new CopyCheckError(
        "mismatch",
        "The copy does not match the image (SHA-256 differs)",
      );
    }
    const placed = job.replace === job.dest
      ? (Deno.renameSync(temp, job.dest), { dest: job.dest, reused: false })
      : place(temp, job.dest, size, sha256);
    syncDir(folder);
    // A new folder's own name must reach the disk too.
    if (created) syncDir(dirname(folder));
    return { size, sha256, ...placed };
  } catch (err) {
    try {
      Deno.removeSync(temp);
    } catch {
      // Not created, or already in place: nothing to take back.
    }
    throw err;
  }
}

/**
 * Puts the verified temp file at `dest`, or at the first free name beside
 * it, without ever replacing a file: a hard link fails when the name is
 * taken, atomically, so two copies racing for one name cannot overwrite
 * each other. A taken name holding the same bytes is the copy already.
 */
function place(
  temp: string,
  dest: string,
  size: number,
  sha256: string,
): { dest: string; reused: boolean } {
  for (let n = 1; n <= MAX_NAME_TRIES; n++) {
    const name = n === 1 ? dest : variantName(dest, n);
    if (putAt(temp, name)) return { dest: name, reused: false };
    const there = statOrNull(name);
    if (
      there?.isFile && there.size === size && sha256Of(name).sha256 === sha256
    ) {
      Deno.removeSync(temp);
      return { dest: name, reused: true };
    }
  }
  throw new Error(
    `Cannot place the copy at ${dest}: it and ${
      MAX_NAME_TRIES - 1
    } names beside it hold other files`,
  );
}

/** Moves `temp` to `name` unless `name` exists; false when it does. */
function putAt(temp: string, name: string): boolean {
  try {
    Deno.linkSync(temp, name);
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return false;
    if (!linkUnsupported(err)) throw err;
    // A file system without hard links (some NAS shares): look, then
    // rename. Only this process writes here (the run lock), so the gap
    // between the two is not raced by another copy of ours.
    if (statOrNull(name)) return false;
    Deno.renameSync(temp, name);
    return true;
  }
  Deno.removeSync(temp);
  return true;
}

function linkUnsupported(err: unknown): boolean {
  const code = (err as { code?: string })?.code ?? "";
  return err instanceof Deno.errors.NotSupported ||
    ["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV", "EMLINK"].includes(
      code,
    ) || /operation not (supported|permitted)/i.test(String(err));
}

/** `cat.png` -> `cat~2.png`; `README` -> `README~2`. */
export function variantName(path: string, n: number): string {
  const dir = dirname(path);
  const base = basename(path);
  const dot = base.lastIndexOf(".");
  const name = dot > 0
    ? `${base.slice(0, dot)}~${n}${base.slice(dot)}`
    : `${base}~${n}`;
  return join(dir, name);
}

export function hashRange(job: HashJob): HashDone {
  const sha256 = job.sha256 ? createHash("sha256") : undefined;
  const md5 = job.md5 ? createHash("md5") : undefined;
  const slice = job.sliceBytes ? createHash("md5") : undefined;
  const blockBytes = job.blockBytes ?? 0;
  const blocks: string[] = [];
  let block = blockBytes > 0 ? createHash("md5") : undefined;
  let inBlock = 0;
  let total = 0;
  const file = Deno.openSync(job.path, { read: true });
  try {
    if (job.offset > 0) file.seekSync(job.offset, Deno.SeekMode.Start);
    const buf = buffer();
    const limit = job.length < 0 ? Infinity : job.length;
    while (total < limit) {
      const want = Math.min(buf.length, limit - total);
      const n = file.readSync(
        want === buf.length ? buf : buf.subarray(0, want),
      );
      if (n === null) break;
      const piece = buf.subarray(0, n);
      sha256?.update(piece);
      md5?.update(piece);
      if (slice && total < job.sliceBytes!) {
        slice.update(piece.subarray(0, job.sliceBytes! - total));
      }
      total += n;
      let off = 0;
      while (block && off < n) {
        const take = Math.min(blockBytes - inBlock, n - off);
        block.update(piece.subarray(off, off + take));
        inBlock += take;
        off += take;
        if (inBlock === blockBytes) {
          blocks.push(block.digest("hex"));
          block = createHash("md5");
          inBlock = 0;
        }
      }
    }
  } finally {
    file.close();
  }
  if (block && (inBlock > 0 || blocks.length === 0)) {
    blocks.push(block.digest("hex"));
  }
  return {
    size: total,
    sha256: sha256?.digest("hex"),
    md5: md5?.digest("hex"),
    sliceMd5: slice?.digest("hex"),
    blocks: blockBytes > 0 ? blocks : undefined,
  };
}

function sha256Of(path: string): { sha256: string; size: number } {
  const r = hashRange({
    kind: "hash",
    path,
    offset: 0,
    length: -1,
    sha256: true,
  });
  return { sha256: r.sha256!, size: r.size };
}

function writeAllSync(file: Deno.FsFile, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += file.writeSync(data.subarray(off));
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** Creates `folder` (and any missing parent); true when it did not exist. */
function makeFolder(folder: string): boolean {
  try {
    Deno.mkdirSync(folder);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return false;
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  Deno.mkdirSync(folder, { recursive: true });
  return true;
}

function removeStaleTemps(folder: string, prefix: string, mine: string): void {
  for (const e of Deno.readDirSync(folder)) {
    if (e.isFile && e.name.startsWith(prefix) && !e.name.startsWith(mine)) {
      try {
        Deno.removeSync(join(folder, e.name));
      } catch {
        // One it cannot remove is left alone; the copy gets its own name.
      }
    }
  }
}

/**
 * Device and inode where the platform has them; otherwise the real path,
 * in lower case (Windows folders do not tell case apart).
 */
export function fileIdentity(path: string, info: Deno.FileInfo): string {
  if (info.ino !== null && info.dev !== null) return `${info.dev}:${info.ino}`;
  return Deno.realPathSync(path).toLowerCase();
}

/** An error as it crosses from a worker: enough to rebuild its class. */
export interface WireError {
  name: string;
  message: string;
  code?: string;
  check?: "changed" | "mismatch";
  side?: string;
}

export function toWire(err: unknown): WireError {
  const e = err as { name?: string; message?: string; code?: string };
  return {
    name: e?.name ?? "Error",
    message: e?.message ?? String(err),
    code: typeof e?.code === "string" ? e.code : undefined,
    check: err instanceof CopyCheckError ? err.check : undefined,
    side: isSourceError(err) ? "source" : undefined,
  };
}

/**
 * Rebuilds a worker's error as the same class (`Deno.errors.NotFound`, ...)
 * with its `code`, so callers classify it as if it had happened here.
 */
export function fromWire(w: WireError): Error {
  if (w.check) return new CopyCheckError(w.check, w.message);
  const errors = Deno.errors as unknown as Record<
    string,
    new (message: string) => Error
  >;
  const Cls = Object.hasOwn(errors, w.name) ? errors[w.name] : Error;
  const err = new Cls(w.message) as Error & { code?: string; side?: string };
  if (w.code) err.code = w.code;
  if (w.side) err.side = w.side;
  return err;
}
