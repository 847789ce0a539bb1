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

export type Resolved =
  | {
    kind: "file";
    path: string;
    size: number;
    mtimeMs: number;
    /** The file's inode (null where the platform has none): its identity. */
    ino: number | null;
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

/** The lexical absolute path of an image column value, without touching the disk. */
export function lexicalPath(root: string, value: string): string {
  return normalize(isAbsolute(value) ? value : join(root, value));
}

/**
 * Resolves an image column value against the (already real) image root.
 * Never throws for a bad value: it answers `refused` with the reason.
 */
export async function resolveImage(
  realRoot: string,
  value: string,
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
  const lexical = lexicalPath(realRoot, value);
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
