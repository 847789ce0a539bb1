/**
 * A local or NAS folder as the backup target. Copies go to
 * `<dir>/<order number>/<file name>`.
 *
 * A copy is written to a temp file beside its final name while the source is
 * hashed (one read of the source), flushed to disk, read back and hashed
 * again; only when the two SHA-256 values match is it renamed into place and
 * `put` resolves. A copy already present with the same content is reused.
 */

import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { StorageError } from "../errors.ts";
import {
  createHash,
  freeBytes,
  fsProblem,
  isNotFound,
  randomSuffix,
  readChunks,
  removeStaleTemps,
  sha256File,
  syncDirAsync,
  writeAll,
} from "../fsutil.ts";
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

export class LocalStorage implements Storage {
  readonly name = "local";
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
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
    const existing = await statOrNull(dest);
    if (existing && existing.size === source.size) {
      const [a, b] = await Promise.all([
        sha256File(source.path),
        sha256File(dest),
      ]);
      if (a.sha256 === b.sha256 && a.size === source.size) {
        options.onProgress?.(source.size);
        return {
          remotePath,
          size: a.size,
          sha256: a.sha256,
          verifiedBy: "sha256 of existing copy",
          reused: true,
        };
      }
    }

    await this.#io(() => Deno.mkdir(dirname(dest), { recursive: true }));
    // A run killed mid-copy left its temp file here; `put` runs under the
    // run lock, so it is nobody's now.
    await removeStaleTemps(dest, ".partial-");
    const temp = join(
      dirname(dest),
      `.${basename(dest)}.partial-${randomSuffix()}`,
    );
    try {
      const before = await Deno.stat(source.path);
      // A small image is read, and read back, in one call each: for them the
      // round trips of a streamed copy cost more than the bytes.
      const whole = before.size <= WHOLE_FILE_BYTES;
      const hash = createHash("sha256");
      const size = await this.#io(async () => {
        using out = await Deno.open(temp, {
          write: true,
          createNew: true,
          mode: 0o600,
        });
        let n: number;
        if (whole) {
          const data = await Deno.readFile(source.path);
          options.signal?.throwIfAborted();
          hash.update(data);
          await writeAll(out, data);
          options.onProgress?.(data.length);
          n = data.length;
        } else {
          n = await readChunks(source.path, async (chunk) => {
            options.signal?.throwIfAborted();
            hash.update(chunk);
            await writeAll(out, chunk);
            options.onProgress?.(chunk.length);
          });
        }
        await out.sync();
        return n;
      });
      const sha256 = hash.digest("hex");
      const after = await Deno.stat(source.path);
      if (
        size !== after.size ||
        before.mtime?.getTime() !== after.mtime?.getTime()
      ) {
        throw new StorageError(
          `The image changed while it was being copied; it will be tried again`,
          "retry",
        );
      }
      const check = whole ? await sha256Whole(temp) : await sha256File(temp);
      if (check.sha256 !== sha256 || check.size !== size) {
        throw new StorageError(
          `The copy in ${this.dir} does not match the image (SHA-256 differs); it will be tried again`,
          "retry",
        );
      }
      await this.#io(() => Deno.rename(temp, dest));
      await syncDirAsync(dirname(dest));
      return {
        remotePath,
        size,
        sha256,
        verifiedBy: "sha256 of copy",
        reused: false,
      };
    } catch (err) {
      await Deno.remove(temp).catch(() => {});
      throw err;
    }
  }

  async #io<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof StorageError) throw err;
      const problem = fsProblem(err);
      if (problem) {
        throw new StorageError(
          `Cannot write to the backup folder ${this.dir}: ${problem}`,
          problem === "the disk is full" ||
            problem === "the file system is read-only" ||
            problem === "the disk quota is exceeded"
            ? "stop"
            : "retry",
          { cause: err },
        );
      }
      throw err;
    }
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

/** Files up to this size are copied and verified with one read each. */
const WHOLE_FILE_BYTES = 4 * 1024 * 1024;

/** SHA-256 of a small file read in one call. */
async function sha256Whole(
  path: string,
): Promise<{ sha256: string; size: number }> {
  const data = await Deno.readFile(path);
  return {
    sha256: createHash("sha256").update(data).digest("hex"),
    size: data.length,
  };
}

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

LocalStorage satisfies new (dir: string) => Storage;
