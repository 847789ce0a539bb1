/**
 * What every benchmark shares: running a command under `/usr/bin/time` for
 * its wall time and peak resident memory, medians, units, and the paths of
 * the repository and the generated data.
 */

import { fileURLToPath } from "node:url";
import { join } from "node:path";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const MAIN = join(REPO, "main.ts");
export const KIB = 1024;
export const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;

export type Mode = "quick" | "full";

/** What one timed command took. */
export interface Sample {
  /** Wall-clock seconds, measured around the whole process. */
  seconds: number;
  /** Peak resident set size in bytes (largest process of the tree). */
  peakRss: number;
  /** What the command printed, when asked to keep it. */
  stdout: string;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Keep stdout (otherwise it goes to /dev/null). */
  keepStdout?: boolean;
  /** Exit codes that are not a failure (default: 0 only). */
  okCodes?: number[];
}

let timeFile = "";

/**
 * Runs `cmd` under GNU time (`%M`: peak RSS in KiB of the largest process
 * waited for) and measures the wall time from spawn to exit.
 */
export async function timed(
  cmd: string[],
  options: RunOptions = {},
): Promise<Sample> {
  timeFile ||= await Deno.makeTempFile({ prefix: "bench-time-" });
  const child = new Deno.Command("/usr/bin/time", {
    args: ["-f", "%M", "-o", timeFile, "--", ...cmd],
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: options.keepStdout ? "piped" : "null",
    stderr: "piped",
  });
  const start = performance.now();
  const out = await child.output();
  const seconds = (performance.now() - start) / 1000;
  const ok = options.okCodes ?? [0];
  if (!ok.includes(out.code)) {
    throw new Error(
      `${cmd.join(" ")} exited with ${out.code}: ${
        new TextDecoder().decode(out.stderr).slice(-2000)
      }`,
    );
  }
  const kib = Number(
    (await Deno.readTextFile(timeFile)).trim().split("\n")
      .pop(),
  );
  return {
    seconds,
    peakRss: kib * KIB,
    stdout: options.keepStdout ? new TextDecoder().decode(out.stdout) : "",
  };
}

/** Runs a command for its side effect; throws with its stderr on failure. */
export async function sh(
  cmd: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `${cmd.join(" ")} exited with ${out.code}: ${
        new TextDecoder().decode(out.stderr).slice(-2000)
      }`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}

/** The image-agent command line, as an operator runs it from source. */
export function agent(...args: string[]): string[] {
  return [Deno.execPath(), "run", "--allow-all", "--quiet", MAIN, ...args];
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median seconds and median peak RSS of several samples. */
export interface Summary {
  runs: number;
  seconds: number;
  minSeconds: number;
  maxSeconds: number;
  peakRss: number;
}

export function summarize(samples: Sample[]): Summary {
  const secs = samples.map((s) => s.seconds);
  return {
    runs: samples.length,
    seconds: median(secs),
    minSeconds: Math.min(...secs),
    maxSeconds: Math.max(...secs),
    peakRss: median(samples.map((s) => s.peakRss)),
  };
}

export function fmtSeconds(s: number): string {
  if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
  if (s < 100) return `${s.toFixed(2)} s`;
  return `${s.toFixed(0)} s`;
}

export function fmtMiB(bytes: number): string {
  return `${(bytes / MIB).toFixed(0)} MiB`;
}

export function fmtSize(bytes: number): string {
  if (bytes >= GIB) return `${+(bytes / GIB).toFixed(2)} GiB`;
  if (bytes >= MIB) return `${+(bytes / MIB).toFixed(1)} MiB`;
  return `${+(bytes / KIB).toFixed(0)} KiB`;
}

export function fmtRatio(x: number): string {
  return `${x.toFixed(2)}×`;
}

export function fmtCount(n: number): string {
  return n.toLocaleString("en-US");
}

/** Decimal megabytes per second, as disk and network tools print them. */
export function mbPerSec(bytes: number, seconds: number): number {
  return bytes / 1e6 / seconds;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

export async function removeTree(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}

/** Drops the page cache's dirty pages to disk so one run's writeback does not slow the next. */
export async function settle(): Promise<void> {
  await sh(["sync"]);
}

/** Prints a progress line on stderr. */
export function note(message: string): void {
  console.error(`[bench] ${message}`);
}

/**
 * A deterministic, incompressible byte source: one random 4 MiB pool; file
 * `i` starts at an offset derived from `i` and carries `i` in its first
 * bytes, so no two files are equal and nothing compresses or dedups.
 */
export class Bytes {
  #pool: Uint8Array;

  constructor(poolSize = 4 * MIB) {
    this.#pool = new Uint8Array(poolSize);
    for (let off = 0; off < poolSize; off += 65536) {
      crypto.getRandomValues(this.#pool.subarray(off, off + 65536));
    }
  }

  /** Writes `size` bytes for file number `i` to `path`. */
  async write(path: string, size: number, i: number): Promise<void> {
    using f = await Deno.open(path, {
      write: true,
      create: true,
      truncate: true,
    });
    const pool = this.#pool;
    let off = (i * 7919 * 4096) % pool.length;
    let left = size;
    let first = true;
    while (left > 0) {
      const take = Math.min(left, pool.length - off, MIB);
      let piece = pool.subarray(off, off + take);
      if (first) {
        piece = piece.slice();
        new DataView(piece.buffer).setFloat64(0, i);
        first = false;
      }
      let written = 0;
      while (written < piece.length) {
        written += await f.write(piece.subarray(written));
      }
      left -= take;
      off = (off + take) % pool.length;
    }
  }
}
