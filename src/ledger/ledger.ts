/**
 * The agent's own record of every order it touched and every run, in a
 * SQLite file under `state.dir` (never in the shop's database).
 *
 * One `backups` row per order image: its state (`pending`, `completed`,
 * `failed`, `skipped`, `expired`), where the copy is, its size and hashes,
 * and what happened to the local file (`present`, `deleted`, `cleared`).
 * The engine writes each step here, in a committed transaction, before it
 * starts the next; a crash between two steps leaves a row the next run
 * finishes. `events` keeps the full per-order history, `runs` every run.
 *
 * The file is opened in WAL mode with `synchronous=FULL`: a step recorded
 * here survives a power cut before the file it allows us to delete is gone.
 */

import {
  DatabaseSync,
  type SQLInputValue,
  type StatementSync,
} from "node:sqlite";
import { join } from "node:path";
import { sqlTime } from "../clock.ts";
import { withBusyRetry } from "../sqlite_busy.ts";
import type { ResumeSlot } from "../storage/storage.ts";

export type BackupState =
  | "pending"
  | "completed"
  | "failed"
  | "skipped"
  | "expired";
export type LocalState = "present" | "deleted" | "cleared";

export interface BackupRow {
  id: number;
  orderKey: string;
  orderNo: string;
  /** The image column's value when the backup was planned. */
  image: string;
  /** The resolved absolute path of the local file. */
  path: string;
  target: string;
  remotePath: string | null;
  state: BackupState;
  reason: string | null;
  size: number | null;
  sha256: string | null;
  md5: string | null;
  verifiedBy: string | null;
  attempts: number;
  localState: LocalState;
  createdAt: string;
  updatedAt: string;
  completedAt: string | null;
  deletedAt: string | null;
  clearedAt: string | null;
  restoredAt: string | null;
  expiredAt: string | null;
}

export type EventKind =
  | "planned"
  | "backed_up"
  | "reused"
  | "backup_failed"
  | "skipped"
  | "deleted"
  | "cleared"
  | "restored"
  | "restore_failed"
  | "expired";

export interface EventRow {
  id: number;
  at: string;
  runId: number | null;
  orderKey: string;
  orderNo: string;
  kind: EventKind;
  detail: string | null;
  size: number | null;
  sha256: string | null;
  target: string | null;
  remotePath: string | null;
}

export interface RunSummary {
  eligible: number;
  backedUp: number;
  cleaned: number;
  failed: number;
  skipped: number;
  freedBytes: number;
  dryRun: boolean;
}

export interface RunRow extends RunSummary {
  id: number;
  command: string;
  trigger: string;
  pid: number;
  startedAt: string;
  finishedAt: string | null;
  status: "running" | "ok" | "partial" | "error" | "interrupted";
  errors: string[];
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS backups (
  id INTEGER PRIMARY KEY,
  order_key TEXT NOT NULL,
  order_no TEXT NOT NULL,
  image TEXT NOT NULL,
  path TEXT NOT NULL,
  target TEXT NOT NULL,
  remote_path TEXT,
  state TEXT NOT NULL,
  reason TEXT,
  size INTEGER,
  sha256 TEXT,
  md5 TEXT,
  verified_by TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  upload_state TEXT,
  local_state TEXT NOT NULL DEFAULT 'present',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  completed_at TEXT,
  deleted_at TEXT,
  cleared_at TEXT,
  restored_at TEXT,
  expired_at TEXT,
  UNIQUE (order_key, image)
);
CREATE INDEX IF NOT EXISTS backups_order_no ON backups (order_no);
CREATE INDEX IF NOT EXISTS backups_state ON backups (state, completed_at);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,
  at TEXT NOT NULL,
  run_id INTEGER,
  order_key TEXT NOT NULL,
  order_no TEXT NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT,
  size INTEGER,
  sha256 TEXT,
  target TEXT,
  remote_path TEXT
);
CREATE INDEX IF NOT EXISTS events_order_no ON events (order_no, id);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY,
  command TEXT NOT NULL,
  trigger TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  status TEXT NOT NULL,
  dry_run INTEGER NOT NULL,
  eligible INTEGER NOT NULL DEFAULT 0,
  backed_up INTEGER NOT NULL DEFAULT 0,
  cleaned INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  skipped INTEGER NOT NULL DEFAULT 0,
  freed_bytes INTEGER NOT NULL DEFAULT 0,
  errors TEXT NOT NULL DEFAULT '[]'
);
`;

export const LEDGER_FILE = "ledger.db";

type Row = Record<string, unknown>;

function toBackup(r: Row): BackupRow {
  const s = (k: string) => (r[k] === null ? null : String(r[k]));
  const n = (k: string) => (r[k] === null ? null : Number(r[k]));
  return {
    id: Number(r.id),
    orderKey: String(r.order_key),
    orderNo: String(r.order_no),
    image: String(r.image),
    path: String(r.path),
    target: String(r.target),
    remotePath: s("remote_path"),
    state: String(r.state) as BackupState,
    reason: s("reason"),
    size: n("size"),
    sha256: s("sha256"),
    md5: s("md5"),
    verifiedBy: s("verified_by"),
    attempts: Number(r.attempts),
    localState: String(r.local_state) as LocalState,
    createdAt: String(r.created_at),
    updatedAt: String(r.updated_at),
    completedAt: s("completed_at"),
    deletedAt: s("deleted_at"),
    clearedAt: s("cleared_at"),
    restoredAt: s("restored_at"),
    expiredAt: s("expired_at"),
  };
}

function toEvent(r: Row): EventRow {
  return {
    id: Number(r.id),
    at: String(r.at),
    runId: r.run_id === null ? null : Number(r.run_id),
    orderKey: String(r.order_key),
    orderNo: String(r.order_no),
    kind: String(r.kind) as EventKind,
    detail: r.detail === null ? null : String(r.detail),
    size: r.size === null ? null : Number(r.size),
    sha256: r.sha256 === null ? null : String(r.sha256),
    target: r.target === null ? null : String(r.target),
    remotePath: r.remote_path === null ? null : String(r.remote_path),
  };
}

function toRun(r: Row): RunRow {
  return {
    id: Number(r.id),
    command: String(r.command),
    trigger: String(r.trigger),
    pid: Number(r.pid),
    startedAt: String(r.started_at),
    finishedAt: r.finished_at === null ? null : String(r.finished_at),
    status: String(r.status) as RunRow["status"],
    dryRun: Number(r.dry_run) === 1,
    eligible: Number(r.eligible),
    backedUp: Number(r.backed_up),
    cleaned: Number(r.cleaned),
    failed: Number(r.failed),
    skipped: Number(r.skipped),
    freedBytes: Number(r.freed_bytes),
    errors: JSON.parse(String(r.errors)),
  };
}

export interface NewEvent {
  orderKey: string;
  orderNo: string;
  kind: EventKind;
  detail?: string | null;
  size?: number | null;
  sha256?: string | null;
  target?: string | null;
  remotePath?: string | null;
}

export class Ledger {
  readonly path: string;
  #db: DatabaseSync;
  /** Prepared statements by SQL text: a run issues the same few thousands of times. */
  #statements = new Map<string, StatementSync>();
  #now: () => Date;
  runId: number | null = null;

  private constructor(path: string, now: () => Date) {
    this.path = path;
    this.#now = now;
    this.#db = new DatabaseSync(path);
    this.#db.exec("PRAGMA busy_timeout = 5000");
    this.#busy(() => {
      this.#db.exec("PRAGMA journal_mode = WAL");
      this.#db.exec("PRAGMA synchronous = FULL");
      this.#db.exec(SCHEMA);
    });
  }

  /** Opens (creating when needed) the ledger in `stateDir`. */
  static open(stateDir: string, now: () => Date = () => new Date()): Ledger {
    Deno.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    return new Ledger(join(stateDir, LEDGER_FILE), now);
  }

  /** True when a ledger file exists in `stateDir`. */
  static exists(stateDir: string): boolean {
    try {
      return Deno.statSync(join(stateDir, LEDGER_FILE)).isFile;
    } catch {
      return false;
    }
  }

  #busy<T>(fn: () => T): T {
    return withBusyRetry(fn, { what: "The ledger", patienceMs: 60000 });
  }

  #stamp(): string {
    return sqlTime(this.#now());
  }

  #stmt(sql: string): StatementSync {
    let s = this.#statements.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }

  #all(sql: string, ...params: SQLInputValue[]): Row[] {
    return this.#busy(() => this.#stmt(sql).all(...params)) as Row[];
  }

  #get(sql: string, ...params: SQLInputValue[]): Row | undefined {
    return this.#busy(() => this.#stmt(sql).get(...params)) as
      | Row
      | undefined;
  }

  #run(sql: string, ...params: SQLInputValue[]): number {
    const r = this.#stmt(sql).run(...params);
    return Number(r.lastInsertRowid);
  }

  /** Runs `fn` in one committed write transaction. */
  transaction<T>(fn: () => T): T {
    return this.#busy(() => {
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        const result = fn();
        this.#db.exec("COMMIT");
        return result;
      } catch (err) {
        this.#db.exec("ROLLBACK");
        throw err;
      }
    });
  }

  // ---- identity

  /**
   * This ledger's id, made once when it is first asked for. It is written
   * beside the copies and in the state folder (see engine/ledger_guard.ts),
   * so a run can tell a lost ledger from a new installation. With `create`
   * false (a dry run) a ledger without one answers "(none yet)".
   */
  identity(create = true): { id: string; createdAt: string; backups: number } {
    const read = () =>
      this.#get(`SELECT value FROM meta WHERE key = 'ledger_id'`);
    if (!read() && create) {
      this.transaction(() => {
        this.#run(
          `INSERT OR IGNORE INTO meta (key, value) VALUES ('ledger_id', ?), ('created_at', ?)`,
          crypto.randomUUID(),
          this.#stamp(),
        );
      });
    }
    const created = this.#get(
      `SELECT value FROM meta WHERE key = 'created_at'`,
    );
    const n = this.#get(`SELECT COUNT(*) AS n FROM backups`)!;
    const id = read();
    return {
      id: id ? String(id.value) : "(none yet)",
      createdAt: created ? String(created.value) : "",
      backups: Number(n.n),
    };
  }

  // ---- runs

  startRun(command: string, trigger: string, dryRun: boolean): number {
    const id = this.transaction(() =>
      this.#run(
        `INSERT INTO runs (command, trigger, pid, started_at, status, dry_run)
         VALUES (?, ?, ?, ?, 'running', ?)`,
        command,
        trigger,
        Deno.pid,
        this.#stamp(),
        dryRun ? 1 : 0,
      )
    );
    this.runId = id;
    return id;
  }

  finishRun(
    id: number,
    summary: RunSummary,
    status: RunRow["status"],
    errors: string[],
  ): void {
    this.transaction(() =>
      this.#run(
        `UPDATE runs SET finished_at = ?, status = ?, eligible = ?, backed_up = ?,
           cleaned = ?, failed = ?, skipped = ?, freed_bytes = ?, errors = ?
         WHERE id = ?`,
        this.#stamp(),
        status,
        summary.eligible,
        summary.backedUp,
        summary.cleaned,
        summary.failed,
        summary.skipped,
        summary.freedBytes,
        JSON.stringify(errors.slice(0, 100)),
        id,
      )
    );
  }

  /** Marks runs left `running` by a process that is gone as interrupted. */
  closeAbandonedRuns(): number {
    return this.transaction(() => {
      const r = this.#db.prepare(
        `UPDATE runs SET status = 'interrupted', finished_at = COALESCE(finished_at, ?)
         WHERE status = 'running' AND pid <> ?`,
      ).run(this.#stamp(), Deno.pid);
      return Number(r.changes);
    });
  }

  runs(limit = 20): RunRow[] {
    return this.#all(`SELECT * FROM runs ORDER BY id DESC LIMIT ?`, limit).map(
      toRun,
    );
  }

  lastRun(): RunRow | undefined {
    return this.runs(1)[0];
  }

  // ---- backups

  /** The row for this order image, if any. */
  find(orderKey: string, image: string): BackupRow | undefined {
    const r = this.#get(
      `SELECT * FROM backups WHERE order_key = ? AND image = ?`,
      orderKey,
      image,
    );
    return r ? toBackup(r) : undefined;
  }

  byId(id: number): BackupRow | undefined {
    const r = this.#get(`SELECT * FROM backups WHERE id = ?`, id);
    return r ? toBackup(r) : undefined;
  }

  /** Rows of an order number, newest first. */
  byOrderNo(orderNo: string): BackupRow[] {
    return this.#all(
      `SELECT * FROM backups WHERE order_no = ? ORDER BY id DESC`,
      orderNo,
    ).map(toBackup);
  }

  /** The latest restore of this order key, to hold the image `afterDays`. */
  lastRestore(orderKey: string): string | null {
    const r = this.#get(
      `SELECT MAX(restored_at) AS t FROM backups WHERE order_key = ?`,
      orderKey,
    );
    return r && r.t !== null ? String(r.t) : null;
  }

  /**
   * Records the plan for an order: a new `pending` row, or the existing row
   * brought back to `pending` for another attempt. Call inside `transaction`.
   */
  plan(
    fields: {
      orderKey: string;
      orderNo: string;
      image: string;
      path: string;
      target: string;
    },
  ): BackupRow {
    const now = this.#stamp();
    const existing = this.find(fields.orderKey, fields.image);
    if (!existing) {
      const id = this.#run(
        `INSERT INTO backups (order_key, order_no, image, path, target, state,
           local_state, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, 'pending', 'present', ?, ?)`,
        fields.orderKey,
        fields.orderNo,
        fields.image,
        fields.path,
        fields.target,
        now,
        now,
      );
      this.event({ ...fields, kind: "planned", target: fields.target });
      return this.byId(id)!;
    }
    if (existing.state !== "pending") {
      this.#run(
        `UPDATE backups SET state = 'pending', reason = NULL, path = ?, target = ?,
           order_no = ?, updated_at = ? WHERE id = ?`,
        fields.path,
        fields.target,
        fields.orderNo,
        now,
        existing.id,
      );
      this.event({ ...fields, kind: "planned", target: fields.target });
    }
    return this.byId(existing.id)!;
  }

  /** Records a skip (outside the root, missing file, rejected by the target). */
  skip(
    fields: {
      orderKey: string;
      orderNo: string;
      image: string;
      path: string;
      target: string;
    },
    reason: string,
  ): void {
    const now = this.#stamp();
    const existing = this.find(fields.orderKey, fields.image);
    if (existing) {
      this.#run(
        `UPDATE backups SET state = 'skipped', reason = ?, updated_at = ? WHERE id = ?`,
        reason,
        now,
        existing.id,
      );
    } else {
      this.#run(
        `INSERT INTO backups (order_key, order_no, image, path, target, state, reason,
           local_state, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, 'skipped', ?, 'present', ?, ?)`,
        fields.orderKey,
        fields.orderNo,
        fields.image,
        fields.path,
        fields.target,
        reason,
        now,
        now,
      );
    }
    this.event({ ...fields, kind: "skipped", detail: reason });
  }

  complete(
    id: number,
    result: {
      remotePath: string;
      size: number;
      sha256: string;
      md5?: string;
      verifiedBy: string;
      reused: boolean;
    },
  ): void {
    const row = this.byId(id)!;
    this.#run(
      `UPDATE backups SET state = 'completed', reason = NULL, remote_path = ?, size = ?,
         sha256 = ?, md5 = ?, verified_by = ?, attempts = attempts + 1,
         upload_state = NULL, completed_at = ?, updated_at = ?, expired_at = NULL
       WHERE id = ?`,
      result.remotePath,
      result.size,
      result.sha256,
      result.md5 ?? null,
      result.verifiedBy,
      this.#stamp(),
      this.#stamp(),
      id,
    );
    this.event({
      orderKey: row.orderKey,
      orderNo: row.orderNo,
      kind: result.reused ? "reused" : "backed_up",
      detail: `verified by ${result.verifiedBy}`,
      size: result.size,
      sha256: result.sha256,
      target: row.target,
      remotePath: result.remotePath,
    });
  }

  fail(id: number, reason: string): void {
    const row = this.byId(id)!;
    this.#run(
      `UPDATE backups SET state = 'failed', reason = ?, attempts = attempts + 1,
         updated_at = ? WHERE id = ?`,
      reason,
      this.#stamp(),
      id,
    );
    this.event({
      orderKey: row.orderKey,
      orderNo: row.orderNo,
      kind: "backup_failed",
      detail: reason,
      target: row.target,
    });
  }

  /** Sets a completed row's state back (a verified copy found missing). */
  invalidate(id: number, reason: string): void {
    this.#run(
      `UPDATE backups SET state = 'failed', reason = ?, updated_at = ? WHERE id = ?`,
      reason,
      this.#stamp(),
      id,
    );
  }

  /**
   * Records one step of a row: sets `column` = now (and `local_state` or
   * `state` as given) and writes the matching event, built from the row.
   */
  #step(
    id: number,
    set: string,
    column: string,
    event: (row: BackupRow) => Omit<NewEvent, "orderKey" | "orderNo">,
  ): void {
    const row = this.byId(id)!;
    this.#run(
      `UPDATE backups SET ${set}, ${column} = ?, updated_at = ? WHERE id = ?`,
      this.#stamp(),
      this.#stamp(),
      id,
    );
    this.event({ orderKey: row.orderKey, orderNo: row.orderNo, ...event(row) });
  }

  markDeleted(id: number, detail?: string): void {
    this.#step(id, "local_state = 'deleted'", "deleted_at", (row) => ({
      kind: "deleted",
      detail: detail ?? row.path,
      size: row.size,
      sha256: row.sha256,
    }));
  }

  markCleared(id: number, detail?: string): void {
    this.#step(id, "local_state = 'cleared'", "cleared_at", (row) => ({
      kind: "cleared",
      detail: detail ?? `image column emptied (was "${row.image}")`,
    }));
  }

  markRestored(id: number): void {
    this.#step(id, "local_state = 'present'", "restored_at", (row) => ({
      kind: "restored",
      detail: row.path,
      size: row.size,
      sha256: row.sha256,
      target: row.target,
      remotePath: row.remotePath,
    }));
  }

  markExpired(id: number): void {
    this.#step(id, "state = 'expired'", "expired_at", (row) => ({
      kind: "expired",
      detail: `remote copy removed after the retention period`,
      target: row.target,
      remotePath: row.remotePath,
    }));
  }

  /**
   * Completed backups whose copy is older than `before` and whose local file
   * is gone, on `target`: candidates for retention.
   */
  expiring(target: string, before: Date, limit = 1000): BackupRow[] {
    return this.#all(
      `SELECT * FROM backups WHERE state = 'completed' AND target = ?
         AND completed_at <= ? AND local_state <> 'present'
       ORDER BY completed_at LIMIT ?`,
      target,
      sqlTime(before),
      limit,
    ).map(toBackup);
  }

  /**
   * Completed rows on `target` whose copy is `remotePath`: more than one
   * when orders with the same bytes found one copy already there.
   */
  holdersOf(target: string, remotePath: string): BackupRow[] {
    return this.#all(
      `SELECT * FROM backups WHERE state = 'completed' AND target = ? AND remote_path = ?`,
      target,
      remotePath,
    ).map(toBackup);
  }

  /** Rows whose local file was deleted but the column not yet cleared. */
  deletedNotCleared(): BackupRow[] {
    return this.#all(
      `SELECT * FROM backups WHERE local_state = 'deleted' ORDER BY id`,
    ).map(toBackup);
  }

  resumeSlot(id: number): ResumeSlot {
    return {
      load: () => {
        const r = this.#get(
          `SELECT upload_state FROM backups WHERE id = ?`,
          id,
        );
        return r && r.upload_state !== null
          ? JSON.parse(String(r.upload_state))
          : undefined;
      },
      save: (state) =>
        this.transaction(() =>
          this.#run(
            `UPDATE backups SET upload_state = ?, updated_at = ? WHERE id = ?`,
            JSON.stringify(state),
            this.#stamp(),
            id,
          )
        ),
      clear: () =>
        this.transaction(() =>
          this.#run(`UPDATE backups SET upload_state = NULL WHERE id = ?`, id)
        ),
    };
  }

  // ---- events and counts

  event(e: NewEvent): void {
    this.#run(
      `INSERT INTO events (at, run_id, order_key, order_no, kind, detail, size,
         sha256, target, remote_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      this.#stamp(),
      this.runId,
      e.orderKey,
      e.orderNo,
      e.kind,
      e.detail ?? null,
      e.size ?? null,
      e.sha256 ?? null,
      e.target ?? null,
      e.remotePath ?? null,
    );
  }

  events(options: { orderNo?: string; limit?: number } = {}): EventRow[] {
    const limit = options.limit ?? 50;
    const rows = options.orderNo !== undefined
      ? this.#all(
        `SELECT * FROM events WHERE order_no = ? ORDER BY id DESC LIMIT ?`,
        options.orderNo,
        limit,
      )
      : this.#all(`SELECT * FROM events ORDER BY id DESC LIMIT ?`, limit);
    return rows.map(toEvent);
  }

  counts(): {
    backups: Record<BackupState, number>;
    cleanedOrders: number;
    freedBytes: number;
    restored: number;
  } {
    const backups: Record<BackupState, number> = {
      pending: 0,
      completed: 0,
      failed: 0,
      skipped: 0,
      expired: 0,
    };
    for (
      const r of this.#all(
        `SELECT state, COUNT(*) AS n FROM backups GROUP BY state`,
      )
    ) {
      backups[String(r.state) as BackupState] = Number(r.n);
    }
    const c = this.#get(
      `SELECT COUNT(DISTINCT order_key) AS n FROM backups WHERE local_state = 'cleared'`,
    )!;
    const f = this.#get(
      `SELECT COALESCE(SUM(size), 0) AS b FROM backups WHERE local_state <> 'present'`,
    )!;
    const r = this.#get(
      `SELECT COUNT(*) AS n FROM events WHERE kind = 'restored'`,
    )!;
    return {
      backups,
      cleanedOrders: Number(c.n),
      freedBytes: Number(f.b),
      restored: Number(r.n),
    };
  }

  close(): void {
    this.#db.close();
  }
}
