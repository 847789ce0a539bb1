/**
 * The run lock: two runs never overlap. It is an exclusive SQLite lock on
 * `state.dir/run.lock`, held for the whole run. The operating system drops
 * it when the process dies, so a lock left by a crashed or killed run is
 * taken over by the next one without any clean-up. Who holds it is written
 * to `run.lock.json`, so the second process can say which one it is.
 *
 * The same kind of lock, named `daemon`, keeps a second daemon from
 * starting on one state folder and tells `status` whether a daemon runs.
 */

import { DatabaseSync } from "node:sqlite";
import { hostname } from "node:os";
import { join } from "node:path";
import { LockHeldError } from "../errors.ts";
import { isBusyError } from "../sqlite_busy.ts";
import type { Clock } from "../clock.ts";

export interface LockHolder {
  pid: number;
  host: string;
  command: string;
  since: string;
}

export interface RunLock {
  readonly holder: LockHolder;
  release(): void;
}

export interface AcquireOptions {
  command: string;
  /** The lock's file name without `.lock`: "run" (default) or "daemon". */
  name?: string;
  /** How long to wait for a running holder to finish; 0 by default. */
  waitMs?: number;
  clock?: Clock;
}

/**
 * How long a contender keeps trying even with `waitMs` 0. Two processes
 * that start together can each make the other's first attempt fail (both
 * hold a shared lock while asking for the exclusive one); without a short,
 * jittered retry both gave up and exited 3, and neither ran.
 */
const CONTENTION_MS = 1500;

export async function acquireRunLock(
  stateDir: string,
  options: AcquireOptions,
): Promise<RunLock> {
  Deno.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const name = options.name ?? "run";
  const file = join(stateDir, `${name}.lock`);
  const infoFile = join(stateDir, `${name}.lock.json`);
  const started = Date.now();
  const deadline = started + (options.waitMs ?? 0);
  for (;;) {
    const db = new DatabaseSync(file);
    try {
      db.exec("PRAGMA busy_timeout = 0");
      db.exec("PRAGMA locking_mode = EXCLUSIVE");
      db.exec("BEGIN EXCLUSIVE");
      db.exec("CREATE TABLE IF NOT EXISTS holder (pid INTEGER)");
    } catch (err) {
      try {
        db.close();
      } catch { /* already closed */ }
      if (!isBusyError(err)) throw err;
      const now = Date.now();
      if (now < started + CONTENTION_MS || now < deadline) {
        if (now < started + CONTENTION_MS) {
          const pause = 20 + Math.floor(Math.random() * 80);
          await new Promise((r) => setTimeout(r, pause));
        } else {
          await (options.clock?.sleep(250) ??
            new Promise((r) => setTimeout(r, 250)));
        }
        continue;
      }
      // The holder writes its name just after taking the lock.
      let holder = readHolder(infoFile);
      for (let i = 0; !holder && i < 10; i++) {
        await new Promise((r) => setTimeout(r, 50));
        holder = readHolder(infoFile);
      }
      const who = holder
        ? `process ${holder.pid} on ${holder.host} ('${holder.command}', since ${holder.since} UTC)`
        : "another process";
      throw new LockHeldError(
        `${
          name === "daemon"
            ? "Another image-agent daemon is running"
            : "Another image-agent run is in progress"
        }: ${who} holds the lock ${file}`,
        {
          hint:
            "wait for it to finish; a lock of a process that died is taken over automatically",
        },
      );
    }
    const holder: LockHolder = {
      pid: Deno.pid,
      host: hostname(),
      command: options.command,
      since: new Date().toISOString().slice(0, 19).replace("T", " "),
    };
    Deno.writeTextFileSync(infoFile, JSON.stringify(holder) + "\n");
    let released = false;
    return {
      holder,
      release() {
        if (released) return;
        released = true;
        try {
          Deno.removeSync(infoFile);
        } catch { /* already gone */ }
        try {
          db.exec("ROLLBACK");
        } catch { /* nothing open */ }
        db.close();
      },
    };
  }
}

/**
 * Who holds a lock now, without waiting: null when nobody does (or the
 * lock was never taken). Only looks: it takes the lock for an instant and
 * gives it back.
 */
export function lockHolder(stateDir: string, name: string): LockHolder | null {
  const file = join(stateDir, `${name}.lock`);
  try {
    Deno.statSync(file);
  } catch {
    return null;
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(file);
  } catch {
    return null;
  }
  try {
    db.exec("PRAGMA busy_timeout = 0");
    db.exec("BEGIN EXCLUSIVE");
    db.exec("ROLLBACK");
    return null;
  } catch (err) {
    if (!isBusyError(err)) return null;
    return readHolder(join(stateDir, `${name}.lock.json`)) ??
      { pid: 0, host: "?", command: name, since: "?" };
  } finally {
    db.close();
  }
}

function readHolder(infoFile: string): LockHolder | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(infoFile)) as LockHolder;
  } catch {
    return undefined;
  }
}
