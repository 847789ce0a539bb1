/**
 * Where an order's image really is, and whether the agent may touch it.
 *
 * The image column holds a path relative to `images.root` or an absolute
 * one. It is accepted only when it resolves inside the root with every
 * symlink followed; `..`, absolute paths elsewhere, symlinks pointing out,
 * NUL bytes and folders are refused with a reason the operator can read.
 */

import { isAbsolute, join, normalize, relative, resolve, sep } from "node:path";
import { isNotFound } from "../fsutil.ts";
import { fileIdentity } from "../io/jobs.ts";

export type Resolved =
  | {
    kind: "file";
    path: string;
    size: number;
    mtimeMs: number;
    /** The file's inode (null where the platform has none). */
    ino: number | null;
    /** Which file it is, as `fileIdentity` (io/jobs.ts) tells it. */
    id: string;
    /**
     * The path as written when it is itself a symlink (to `path`, inside
     * the root). Cleaning such an order removes the link, never the file
     * it points to: that file may be another order's image.
     */
    link?: string;
  }
  | { kind: "missing"; path: string }
  | { kind: "refused"; path: string; reason: string };

const MAX_PATH = 4096;

/** True when `child` is `parent` itself or lies below it. */
export function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === "" ||
    (!rel.startsWith(".." + sep) && rel !== ".." && !isAbsolute(rel));
}

/**
 * The lexical absolute path of an image column value, without touching the
 * disk. `root` is the real image root; an absolute value written under the
 * root as configured (a path through a symlink to the real root, say
 * `/srv/images` -> `/data/images`) is read as the same place under `root`.
 */
export function lexicalPath(
  root: string,
  value: string,
  configuredRoot?: string,
): string {
  if (!isAbsolute(value)) return normalize(join(root, value));
  const p = normalize(value);
  if (configuredRoot) {
    const c = normalize(configuredRoot);
    if (c !== root && isInside(c, p)) return join(root, relative(c, p));
  }
  return p;
}

/**
 * Resolves an image column value against the (already real) image root,
 * `configuredRoot` being `images.root` as written in the config. Never
 * throws for a bad value: it answers `refused` with the reason.
 */
export async function resolveImage(
  realRoot: string,
  value: string,
  configuredRoot?: string,
): Promise<Resolved> {
  const shown = value.replaceAll("\0", "\\0");
  if (value.includes("\0")) {
    return {
      kind: "refused",
      path: shown,
      reason: `the image path contains a NUL byte`,
    };
  }
  if (value.trim() === "") {
    return { kind: "refused", path: shown, reason: "the image path is empty" };
  }
  if (value.length > MAX_PATH) {
    return {
      kind: "refused",
      path: shown.slice(0, 80) + "…",
      reason: `the image path is longer than ${MAX_PATH} characters`,
    };
  }
  const lexical = lexicalPath(realRoot, value, configuredRoot);
  if (!isInside(realRoot, lexical)) {
    return {
      kind: "refused",
      path: lexical,
      reason: `the image path resolves outside images.root (${realRoot})`,
    };
  }
  let real: string;
  try {
    real = await Deno.realPath(lexical);
  } catch (err) {
    if (isNotFound(err) || err instanceof Deno.errors.NotADirectory) {
      return await missingOrRefused(realRoot, lexical);
    }
    const msg = err instanceof Error ? err.message : String(err);
    if (/too long|ENAMETOOLONG/i.test(msg)) {
      return {
        kind: "refused",
        path: lexical,
        reason: "the file name is too long",
      };
    }
    if (/loop|ELOOP/i.test(msg)) {
      return {
        kind: "refused",
        path: lexical,
        reason: "the image path is a symlink loop",
      };
    }
    throw err;
  }
  if (!isInside(realRoot, real) || real === realRoot) {
    return {
      kind: "refused",
      path: lexical,
      reason:
        `the image path leads outside images.root through a symlink (to ${real})`,
    };
  }
  const info = await Deno.stat(real);
  if (!info.isFile) {
    return {
      kind: "refused",
      path: lexical,
      reason: "the image path is not a regular file",
    };
  }
  const link = real !== lexical && (await Deno.lstat(lexical)).isSymlink
    ? lexical
    : undefined;
  return {
    kind: "file",
    path: real,
    size: info.size,
    mtimeMs: info.mtime?.getTime() ?? 0,
    ino: info.ino ?? null,
    id: fileIdentity(real, info),
    ...(link ? { link } : {}),
  };
}

/** A missing file is only "missing" when its nearest real folder is inside. */
async function missingOrRefused(
  realRoot: string,
  lexical: string,
): Promise<Resolved> {
  let dir = resolve(lexical, "..");
  while (isInside(realRoot, dir)) {
    try {
      const real = await Deno.realPath(dir);
      if (!isInside(realRoot, real)) {
        return {
          kind: "refused",
          path: lexical,
          reason:
            `the image path leads outside images.root through a symlink (to ${real})`,
        };
      }
      return { kind: "missing", path: lexical };
    } catch {
      if (dir === realRoot) break;
      dir = resolve(dir, "..");
    }
  }
  return { kind: "missing", path: lexical };
}

/**
 * Makes the folder `dir` (inside `realRoot`) exist for a file about to be
 * written there, and returns its real path. Every part of it that exists
 * already is checked: a symlink that leads outside the root, or a part that
 * is not a folder, is refused (`OutsideRootError`) before anything is
 * created, so a write never lands outside the root through a folder
 * replaced by a link. With `create` false nothing is made, and a folder
 * that does not exist yet answers null.
 */
export async function prepareFolder(
  realRoot: string,
  dir: string,
  create = true,
): Promise<string | null> {
  if (!isInside(realRoot, dir)) {
    throw new OutsideRootError(`${dir} lies outside images.root (${realRoot})`);
  }
  let cur = realRoot;
  for (const part of relative(realRoot, dir).split(sep).filter(Boolean)) {
    const next = join(cur, part);
    let info: Deno.FileInfo | null = null;
    try {
      info = await Deno.lstat(next);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (!info) {
      if (!create) return null;
      try {
        await Deno.mkdir(next);
      } catch (err) {
        if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
        info = await Deno.lstat(next); // made meanwhile: check it as found
      }
    }
    if (info?.isSymlink) {
      const real = await Deno.realPath(next);
      if (!isInside(realRoot, real)) {
        throw new OutsideRootError(
          `${next} is a symlink leading outside images.root (to ${real})`,
        );
      }
      cur = real;
      continue;
    }
    if (info && !info.isDirectory) {
      throw new OutsideRootError(`${next} is not a folder`);
    }
    cur = next;
  }
  return cur;
}

/** A path that must not be written to: outside the root, or not a folder. */
export class OutsideRootError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OutsideRootError";
  }
}
